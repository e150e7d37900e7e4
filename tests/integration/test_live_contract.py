"""The store contract (tests/test_store_contract.py) on a real S3 Vectors index.

The contract's tests are imported unchanged; only the kinds of store they run on change: each
``make_store`` test runs on a live index, and the congruence tests (150 generated filters, bad
input) compare the live index with the three offline kinds and the independent reference.

ENHANCED/hybrid: add an entry to ``LIVE_INDEX_MODES`` (its setup function receives the client,
bucket and index name after the index is created, e.g. to call ``update_index_mode``); every
contract test then runs once more on that mode. Buckets created after 2026-09-30 already default
to ENHANCED: ``integration-report.json`` records the mode each index got.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crossmodal_search.stores import S3VectorsStore, VectorStore
from tests.integration.env import LiveEnv
from tests.integration.lifecycle import Usage
from tests.test_store_contract import (  # noqa: F401  (fixtures and tests pytest collects here)
    StoreOpeners,
    all_stores,
    make_store,
    offline_store_openers,
    open_store_of_kind,
    test_bad_input_gives_the_same_error_on_every_store_and_changes_nothing,
    test_delete_removes_records_and_ignores_unknown_keys,
    test_generated_filters_give_identical_results_on_every_store,
    test_get_keeps_the_order_asked_and_reports_missing,
    test_list_valued_fields_match_any_element,
    test_properties,
    test_put_is_an_upsert,
    test_query_many_equals_one_query_per_row,
    test_query_on_an_empty_store_and_top_k_above_count,
    test_query_orders_best_first_with_the_metric_distance,
    test_query_returns_metadata_including_lists,
    test_records_iterates_everything,
)

pytestmark = pytest.mark.integration

#: Index mode -> what to do to a fresh index before the contract runs on it. "default" keeps
#: the bucket's default mode. The single place an ENHANCED (or CLASSIC) parametrisation plugs in.
LIVE_INDEX_MODES: dict[str, Callable[[Any, str, str], None]] = {
    "default": lambda client, bucket, index: None,
}

# Bound of one contract pass on one live kind (`make integration-rehearsal` measured 32
# PutVectors of 520 KB in all, 348 queries processing 45 MB, 59 other requests), with room.
_ONE_KIND = Usage(
    s3v_put_requests=60,
    s3v_put_bytes=800_000,
    s3v_query_requests=450,
    s3v_query_processed_bytes=450 * 200_000,
    s3v_other_requests=400,
)
LIVE_PLAN = _ONE_KIND.scaled(len(LIVE_INDEX_MODES))

_counter = itertools.count()


@pytest.fixture(params=[f"live-{mode}" for mode in LIVE_INDEX_MODES])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store_openers(tmp_path: Path, live: LiveEnv) -> StoreOpeners:
    def opener(mode: str) -> Callable[..., VectorStore]:
        def open_live(*, dimension: int, **kw: Any) -> VectorStore:
            index = f"contract-{next(_counter):04d}"
            store = S3VectorsStore(
                live.run.vector_bucket, index, client=live.s3vectors, dimension=dimension, **kw
            )
            LIVE_INDEX_MODES[mode](live.s3vectors, live.run.vector_bucket, index)
            if f"index_mode[{mode}]" not in live.report.sections.get("contract", {}):
                described = live.s3vectors.get_index(
                    vectorBucketName=live.run.vector_bucket, indexName=index
                )["index"]
                live.report.record("contract", f"index_mode[{mode}]", described.get("indexMode"))
            return store

        return open_live

    return {
        **offline_store_openers(tmp_path),
        **{f"live-{mode}": opener(mode) for mode in LIVE_INDEX_MODES},
    }
