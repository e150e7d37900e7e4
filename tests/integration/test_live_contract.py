"""The store contracts on a real S3 Vectors index: vectors (tests/test_store_contract.py) and
full-text/hybrid search (tests/test_text_contract.py).

The contracts' tests are imported unchanged; only the kinds of store they run on change: each
``make_store``/``make_text_store`` test runs on a live index, and the congruence tests (150
generated filters, bad input) compare the live index with the offline kinds and the independent
references. On the live index the text contract checks order and
membership only, not absolute BM25 or RRF scores (``exact_scores``), which AWS does not
document; a difference in order is a difference in an assumption of docs/hybrid.md.

``LIVE_INDEX_MODES`` maps a mode to the setup of each fresh index (it receives the client, bucket
and index name). The run's bucket is created after 2026-09-30, so its indexes are ENHANCED from
the start and CLASSIC cannot be chosen there (``update_index_mode`` refuses it): the one entry,
``enhanced``, moves an index that is not ENHANCED in place. ``integration-report.json`` records
the mode each index was created with and the mode the contract ran on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crossmodal_search.stores import S3VectorsStore, TextSearchStore, VectorStore
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
from tests.test_text_contract import (  # noqa: F401  (fixtures and tests pytest collects here)
    TextOpener,
    make_text_store,
    open_text_store,
    test_fields_added_later_index_the_records_already_stored,
    test_filters_apply_before_ranking,
    test_full_text_over_several_keys_ranks_by_the_sum,
    test_full_text_ranks_by_bm25,
    test_full_text_returns_only_records_holding_a_query_word,
    test_hybrid_fuses_each_ranking_by_rrf,
    test_list_values_are_searchable_and_other_values_are_not_text,
    test_starts_with_filters_text_queries,
    test_the_index_is_enhanced_and_reports_its_text_fields,
    test_upsert_replaces_old_text_and_delete_removes_it,
    text_store_openers,
)

pytestmark = pytest.mark.integration


def _ensure_enhanced(client: Any, bucket: str, index: str) -> None:
    described = client.get_index(vectorBucketName=bucket, indexName=index)["index"]
    if described.get("indexMode") != "ENHANCED":
        client.update_index_mode(vectorBucketName=bucket, indexName=index, indexMode="ENHANCED")


#: Index mode -> what to do to a fresh index before the contract runs on it; the single place a
#: mode plugs in (each entry runs the whole vector contract once more).
LIVE_INDEX_MODES: dict[str, Callable[[Any, str, str], None]] = {
    "enhanced": _ensure_enhanced,
}

# Bound of one vector contract pass on one live kind (`make integration-rehearsal` measured 32
# PutVectors of 520 KB in all, 348 queries processing 45 MB, 59 other requests), with room.
_ONE_KIND = Usage(
    s3v_put_requests=60,
    s3v_put_bytes=800_000,
    s3v_query_requests=450,
    s3v_query_processed_bytes=450 * 200_000,
    s3v_other_requests=400,
)
# Bound of the text contract on a live index (the rehearsal measured 10 PutVectors of 147 KB,
# 98 queries processing 1.8 MB and 48 other requests: one index per test, created with its text
# fields and read back until they are ACTIVE), with room.
_TEXT = Usage(
    s3v_put_requests=14,
    s3v_put_bytes=220_000,
    s3v_query_requests=150,
    s3v_query_processed_bytes=150 * 30_000,
    s3v_other_requests=120,
)
LIVE_PLAN = _ONE_KIND.scaled(len(LIVE_INDEX_MODES)) + _TEXT

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
            created = store.index_mode
            LIVE_INDEX_MODES[mode](live.s3vectors, live.run.vector_bucket, index)
            if f"index_mode[{mode}]" not in live.report.sections.get("contract", {}):
                described = live.s3vectors.get_index(
                    vectorBucketName=live.run.vector_bucket, indexName=index
                )["index"]
                live.report.record("contract", f"index_mode_at_creation[{mode}]", created)
                live.report.record("contract", f"index_mode[{mode}]", described.get("indexMode"))
            store.refresh()
            return store

        return open_live

    return {
        **offline_store_openers(tmp_path),
        **{f"live-{mode}": opener(mode) for mode in LIVE_INDEX_MODES},
    }


@pytest.fixture(params=["live"])
def text_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def text_openers(tmp_path: Path, live: LiveEnv) -> dict[str, TextOpener]:
    def open_live(**kw: Any) -> TextSearchStore:
        index = f"text-{next(_counter):04d}"
        return S3VectorsStore(live.run.vector_bucket, index, client=live.s3vectors, **kw)

    return {**text_store_openers(tmp_path), "live": open_live}


@pytest.fixture
def exact_scores() -> bool:
    return False
