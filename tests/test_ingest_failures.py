"""Ingestion under failing products and throttling storms: no product blocks the others, no
storm throws away finished embeddings (Bedrock faked at the HTTP boundary)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.datasets import (
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.search import (
    CrossmodalSearcher,
    IngestPolicy,
    Product,
)
from crossmodal_search.stores import LocalVectorStore, VectorStore
from crossmodal_search.testing import FakeBedrock

DIM = 256


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> list[Product]:
    return load_abo(write_sample_catalog(tmp_path_factory.mktemp("sample"))).products


def _calls_needed(products: list[Product]) -> int:
    return sum(
        bool(p.embedding_text.strip()) + (p.image is not None) + len(p.images) for p in products
    )


def _searcher(
    bedrock: FakeBedrock, store: VectorStore, *, attempts: int = 2, **policy: object
) -> tuple[CrossmodalSearcher, list[float]]:
    pauses: list[float] = []
    embedder = NovaEmbeddings(
        client=bedrock.client(),
        dimension=DIM,
        retry_policy=RetryPolicy(max_attempts=attempts, sleep=lambda s: None),
    )
    ingest = IngestPolicy(sleep=pauses.append, **policy)  # type: ignore[arg-type]
    return CrossmodalSearcher(embedder, store, max_concurrency=4, ingest_policy=ingest), pauses


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("ModelErrorException", True),
        ("InternalServerException", True),
        ("ModelTimeoutException", True),
        ("ServiceUnavailableException", True),
        ("ThrottlingException", True),
        ("AccessDeniedException", True),
        ("ValidationException", False),
    ],
)
def test_a_product_that_always_fails_is_reported_and_the_rest_land_in_one_run(
    code: str, retryable: bool, products: list[Product]
) -> None:
    cursed = products[7]
    bedrock = FakeBedrock()
    bedrock.fail_matching(code, contains=cursed.display_title, message="cannot embed this")
    store = LocalVectorStore(dimension=DIM)
    searcher, pauses = _searcher(bedrock, store)

    report = searcher.index(products)

    assert [f.product_id for f in report.failed] == [cursed.product_id]
    failure = report.failed[0]
    assert failure.kind == "text" and failure.code == code
    assert failure.request_id  # the id AWS support asks for
    assert failure.retryable is retryable
    assert report.retry_ids == ([cursed.product_id] if retryable else [])
    assert report.indexed == len(products) - 1
    keys = set(store.keys())
    landed = {p.product_id for p in products if f"combined-{p.product_id}" in keys}
    assert landed == {p.product_id for p in products} - {cursed.product_id}
    assert pauses == []  # one bad product is no storm

    # Once the service embeds it, a rerun pays for that product only.
    bedrock.reset_failures()
    again = searcher.index(products)
    assert (again.indexed, again.skipped_unchanged, again.failed) == (1, len(products) - 1, [])


def test_a_throttling_storm_completes_without_discarding_finished_embeddings(
    products: list[Product],
) -> None:
    bedrock = FakeBedrock()
    bedrock.fail_randomly("ThrottlingException", rate=0.5, seed=7)
    store = LocalVectorStore(dimension=DIM)
    # Three attempts per call: one call in eight outlives its retries; a product meeting
    # that is tried again in a later round of the same run, and paused for when it repeats.
    searcher, _ = _searcher(bedrock, store, attempts=3, product_attempts=12)

    report = searcher.index(products)

    assert report.failed == []
    assert report.indexed == len(products)
    assert len(list(store.keys())) == report.vectors_written
    # Every embedding Bedrock answered was used: none was paid for and thrown away.
    assert bedrock.successes == _calls_needed(products)
    assert bedrock.errors["ThrottlingException"] > 0


def test_a_storm_that_never_ends_stops_with_the_report_after_the_pause_budget(
    products: list[Product],
) -> None:
    bedrock = FakeBedrock()
    store = LocalVectorStore(dimension=DIM)
    searcher, pauses = _searcher(bedrock, store, pause_budget_seconds=12)
    searcher.index(products[:5])  # these land before the storm
    bedrock.fail_always("ServiceUnavailableException")

    from crossmodal_search.search import IngestStoppedError

    with pytest.raises(IngestStoppedError) as info:
        searcher.index(products)
    report = info.value.report
    assert pauses == [5.0]  # the next pause (10 s) would pass the 12 s budget
    assert report.skipped_unchanged == 5 and report.indexed == 0
    assert report.failed and all(f.retryable for f in report.failed)
    assert set(report.retry_ids) <= {p.product_id for p in products[5:]}
    assert "ServiceUnavailableException" in str(info.value)
    assert len(list(store.keys())) == 15  # what landed before is untouched


def test_the_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigurationError):
        IngestPolicy(product_attempts=0)
    with pytest.raises(ConfigurationError):
        IngestPolicy(pause_seconds=float("nan"))


def test_retry_ids_round_trip_through_json(products: list[Product], tmp_path: Path) -> None:
    bedrock = FakeBedrock()
    bedrock.fail_matching("ModelErrorException", contains=products[0].display_title)
    searcher, _ = _searcher(bedrock, LocalVectorStore(dimension=DIM))
    report = searcher.index(products[:3])
    data = report.model_dump(mode="json")
    assert data["retry_ids"] == [products[0].product_id]
    assert data["failed"][0]["code"] == "ModelErrorException"
