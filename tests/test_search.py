"""CrossmodalSearcher end to end: both embedders (offline, Nova via FakeBedrock) x both stores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search._aws import RetryPolicy
from crossmodal_search._types import DistanceMetric, EmbeddingPurpose, Filter, MetadataValue
from crossmodal_search.datasets import (
    SAMPLE_QUERIES,
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import (
    BaseEmbedder,
    Embedder,
    EmbedInput,
    NovaEmbeddings,
    OfflineEmbedder,
    S3Source,
)
from crossmodal_search.errors import (
    ConfigurationError,
    InvalidFilterError,
    InvalidInputError,
    ServiceError,
    UnsupportedMediaError,
)
from crossmodal_search.search import (
    CrossmodalSearcher,
    IngestPolicy,
    IngestStoppedError,
    Product,
)
from crossmodal_search.stores import (
    GetResult,
    QueryMatch,
    StoreLimits,
    VectorRecord,
    VectorStore,
)
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.stores._s3vectors import S3VectorsStore
from crossmodal_search.testing import FakeBedrock, FakeS3Vectors

DIM = 384


@pytest.fixture(scope="module")
def catalog_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_catalog(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def products(catalog_root: Path) -> list[Product]:
    return load_abo(catalog_root).products


@dataclass
class Env:
    """One embedder/store combination, with the fakes behind it (if any)."""

    embedder: Embedder
    store: VectorStore
    bedrock: FakeBedrock | None
    s3: FakeS3Vectors | None

    def searcher(self, **kwargs: Any) -> CrossmodalSearcher:
        return CrossmodalSearcher(self.embedder, self.store, **kwargs)

    def embed_requests(self) -> list[dict[str, Any]]:
        assert self.bedrock is not None
        return [r["singleEmbeddingParams"] for r in self.bedrock.requests]


def _make_env(embedder_kind: str, store_kind: str, metric: DistanceMetric = "cosine") -> Env:
    bedrock = s3 = None
    embedder: Embedder
    if embedder_kind == "nova":
        bedrock = FakeBedrock()
        embedder = NovaEmbeddings(client=bedrock.client(), dimension=DIM)
    else:
        embedder = OfflineEmbedder(DIM)
    store: VectorStore
    if store_kind == "s3":
        s3 = FakeS3Vectors()
        store = S3VectorsStore(
            "shop-vectors", "products", client=s3.client(), dimension=DIM, distance_metric=metric
        )
    else:
        store = LocalVectorStore(dimension=DIM, distance_metric=metric)
    return Env(embedder, store, bedrock, s3)


@pytest.fixture(
    params=[("offline", "local"), ("offline", "s3"), ("nova", "local"), ("nova", "s3")],
    ids=lambda p: "-".join(p),
)
def env(request: pytest.FixtureRequest) -> Env:
    return _make_env(*request.param)


@pytest.fixture(params=["local", "s3"])
def nova_env(request: pytest.FixtureRequest) -> Env:
    return _make_env("nova", request.param)


@pytest.fixture
def nova_local() -> Env:
    return _make_env("nova", "local")


def _all_keys(store: VectorStore) -> list[str]:
    return sorted(store.keys())


def _expected_keys(products: Sequence[Product]) -> list[str]:
    keys = []
    for p in products:
        if p.embedding_text.strip():
            keys.append(f"text-{p.product_id}")
        if p.image:
            keys.append(f"image-{p.product_id}")
        keys.append(f"combined-{p.product_id}")
        keys += [f"image{n}-{p.product_id}" for n in range(2, len(p.all_images) + 1)]
    return sorted(keys)


# ------------------------------------------------------------------------- end to end


def test_index_then_search_text_image_and_both(
    env: Env, products: list[Product], catalog_root: Path
) -> None:
    searcher = env.searcher()
    report = searcher.index(products)
    assert report.failed == []
    assert report.indexed == len(products) == 38
    # Text, image and combined of each product, and the bags' two extra photos.
    assert report.vectors_written == len(_expected_keys(products)) == 114 + 12
    assert report.embed_calls == 76 + 12
    assert _all_keys(env.store) == _expected_keys(products)

    for query in SAMPLE_QUERIES:
        image = query.image_path(catalog_root)
        results = searcher.search(
            query.text,
            str(image) if image else None,
            search_mode=query.search_mode,
            text_weight=query.text_weight,
            top_k=5,
        )
        assert results[0].product_id == query.expected, query.name
        assert len(results) == 5
        assert all(r.matched_type == query.search_mode for r in results)
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)

    top = searcher.search("red summer dress", top_k=1)[0]
    assert top.title.startswith("Daisy Row Women's Red Summer Midi Dress")
    assert top.image_path is not None and Path(top.image_path).is_file()
    assert top.metadata == {
        "brand": "Daisy Row",
        "model_number": "DR-2400R",
        "product_type": "DRESS",
        "color": ["red"],
        "language": "en_US",
        "country": "US",
    }
    if env.bedrock is not None:
        assert env.bedrock.calls == 88 + 1 + 1 + 2 + 1 + 1  # the four sample queries, then one


def test_filters_are_anded_with_the_search_mode(env: Env, products: list[Product]) -> None:
    searcher = env.searcher()
    searcher.index(products)
    reds = searcher.search("summer dress", filter={"color": "red"}, top_k=10)
    assert {r.product_id for r in reds} == {
        p.product_id for p in products if p.metadata.get("color") == ["red"]
    }
    shoes = searcher.search(
        "lamp", search_mode="text", filter={"product_type": {"$in": ["SHOES"]}}, top_k=3
    )
    assert len(shoes) == 3
    assert all(r.metadata["product_type"] == "SHOES" and r.matched_type == "text" for r in shoes)
    none = searcher.search("dress", filter={"brand": "No Such Brand"})
    assert none == []


def test_grouping_returns_top_k_distinct_products(env: Env, products: list[Product]) -> None:
    searcher = env.searcher()
    searcher.index(products)
    results = searcher.search("blue sneakers", search_mode="all", top_k=20, hybrid=False)
    ids = [r.product_id for r in results]
    assert len(ids) == 20 == len(set(ids))
    # Every product has three vectors; the best of them is reported.
    assert {r.matched_type for r in results} <= {"text", "image", "combined"}
    assert [r.distance for r in results] == sorted(r.distance for r in results)
    # Hybrid search groups the same way (the store's 100 results hold 33 products at most).
    hybrid = searcher.search("blue sneakers", search_mode="all", top_k=36, hybrid=None)
    ids = [r.product_id for r in hybrid]
    assert len(ids) == 36 == len(set(ids))
    assert [r.score for r in hybrid] == sorted((r.score for r in hybrid), reverse=True)
    rrf = searcher.search("blue sneakers", image=products[0].image, fusion="rrf", top_k=12)
    assert len({r.product_id for r in rrf}) == 12
    assert [r.score for r in rrf] == sorted((r.score for r in rrf), reverse=True)


def test_query_purposes_follow_what_is_searched(nova_env: Env, products: list[Product]) -> None:
    searcher = nova_env.searcher()
    searcher.index(products)
    assert {r["embeddingPurpose"] for r in nova_env.embed_requests()} == {"GENERIC_INDEX"}
    photo = products[3].image
    expected = {
        "text": "TEXT_RETRIEVAL",
        "image": "IMAGE_RETRIEVAL",
        "combined": "GENERIC_RETRIEVAL",
        "all": "GENERIC_RETRIEVAL",
    }
    for mode, purpose in expected.items():
        for text, image, calls in (("red dress", None, 1), (None, photo, 1), ("red", photo, 2)):
            before = len(nova_env.embed_requests())
            nova_env.searcher().search(text, image, search_mode=mode)  # type: ignore[arg-type]
            sent = nova_env.embed_requests()[before:]
            assert len(sent) == calls
            assert [r["embeddingPurpose"] for r in sent] == [purpose] * calls, (mode, text)
            kinds = sorted("text" if "text" in r else "image" for r in sent)
            assert kinds == sorted(k for k, v in (("text", text), ("image", image)) if v)


def test_zero_weight_part_is_not_embedded(nova_env: Env, products: list[Product]) -> None:
    searcher = nova_env.searcher()
    searcher.index(products[:6])
    before = len(nova_env.embed_requests())
    searcher.search("red", image=products[0].image, text_weight=1.0, fusion="rrf")
    sent = nova_env.embed_requests()[before:]
    assert len(sent) == 1 and "text" in sent[0]


# ------------------------------------------------------------------------- resumption


class FailingPutStore:
    """A VectorStore that delegates to ``inner`` but fails its ``fail_on``-th put."""

    def __init__(self, inner: VectorStore, fail_on: int) -> None:
        self.inner = inner
        self.fail_on = fail_on
        self.puts = 0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def distance_metric(self) -> DistanceMetric:
        return self.inner.distance_metric

    @property
    def non_filterable_metadata_keys(self) -> frozenset[str]:
        return self.inner.non_filterable_metadata_keys

    @property
    def limits(self) -> StoreLimits:
        return self.inner.limits

    def close(self) -> None:
        self.inner.close()

    def put(self, records: Iterable[VectorRecord]) -> None:
        self.puts += 1
        if self.puts == self.fail_on:
            raise ServiceError("injected write failure", code="InternalServerException")
        self.inner.put(records)

    def get(self, keys: Sequence[str]) -> GetResult:
        return self.inner.get(keys)

    def delete(self, keys: Sequence[str]) -> None:
        self.inner.delete(keys)

    def query(
        self, vector: npt.ArrayLike, *, top_k: int = 10, filter: Filter | None = None
    ) -> list[QueryMatch]:
        return self.inner.query(vector, top_k=top_k, filter=filter)

    def query_many(
        self, vectors: npt.ArrayLike, *, top_k: int = 10, filter: Filter | None = None
    ) -> list[list[QueryMatch]]:
        return self.inner.query_many(vectors, top_k=top_k, filter=filter)

    def keys(self) -> Iterator[str]:
        return self.inner.keys()

    def records(self) -> Iterator[VectorRecord]:
        return self.inner.records()


def _fully_stored(store: VectorStore, products: Sequence[Product]) -> set[str]:
    keys = set(store.keys())
    return {
        p.product_id
        for p in products
        if all(k in keys for k in _expected_keys([p]))  # every vector of the product landed
    }


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_interrupted_run_resumes_without_duplicates_or_losses(
    store_kind: str, products: list[Product]
) -> None:
    env = _make_env("nova", store_kind)
    assert env.bedrock is not None
    store: VectorStore
    if store_kind == "s3":
        assert env.s3 is not None
        # AccessDenied is not retried: the second PutVectors request fails for good.
        env.s3.fail_next("put_vectors", "AccessDeniedException", after=1)
        store = env.store
    else:
        store = FailingPutStore(env.store, fail_on=2)
    searcher = CrossmodalSearcher(env.embedder, store, batch_size=20, max_concurrency=4)
    with pytest.raises(ServiceError):
        searcher.index(products)

    landed = _fully_stored(env.store, products)
    assert 0 < len(landed) < len(products)
    assert len(list(env.store.keys())) == 20  # exactly the first batch

    calls_before = env.bedrock.calls
    stored = set(env.store.keys())
    report = searcher.index(products)
    assert report.failed == []
    assert report.skipped_unchanged == len(landed)
    assert report.indexed == len(products) - len(landed)
    # Nothing stored is embedded again: a product whose own vectors are missing costs text +
    # image, and each missing extra photo one call.
    needed = 0
    for p in products:
        own = [
            k for k in _expected_keys([p]) if k.split("-", 1)[0] in ("text", "image", "combined")
        ]
        extra = [k for k in _expected_keys([p]) if k not in own]
        needed += (0 if stored.issuperset(own) else len(own) - 1) + len(set(extra) - stored)
    assert env.bedrock.calls - calls_before == report.embed_calls == needed
    assert _all_keys(env.store) == _expected_keys(products)
    if env.s3 is not None:
        assert env.s3.vector_count("shop-vectors", "products") == 126

    again = searcher.index(products)
    assert (again.indexed, again.skipped_unchanged, again.embed_calls) == (0, 38, 0)
    assert again.vectors_written == 0


def test_changes_are_reembedded_and_stale_vectors_removed(
    env: Env, products: list[Product]
) -> None:
    searcher = env.searcher()
    subset = products[:4]
    searcher.index(subset)
    changed = [
        subset[0].model_copy(update={"text": subset[0].text + "\nNow with pockets"}),
        subset[1].model_copy(update={"image": None}),  # lost its image
        subset[2].model_copy(update={"metadata": {**subset[2].metadata, "brand": "Renamed"}}),
        subset[3],
    ]
    report = searcher.index(changed)
    assert report.skipped_unchanged == 1
    assert report.indexed == 3
    assert report.embed_calls == 2 + 1  # text+image for [0], text only for [1], none for [2]
    assert report.vectors_deleted == 1
    keys = set(env.store.keys())
    assert f"image-{subset[1].product_id}" not in keys
    assert f"text-{subset[1].product_id}" in keys and f"combined-{subset[1].product_id}" in keys
    view = searcher.get_product(subset[2].product_id)
    assert view is not None and view.metadata["brand"] == "Renamed"
    assert view.vector_types == ["text", "image", "combined"]
    view0 = searcher.get_product(subset[0].product_id)
    assert view0 is not None and view0.text.endswith("Now with pockets")
    assert searcher.get_product("nope") is None
    assert len(keys) == 3 + 2 + 3 + 3


def test_keys_added_by_other_tools_survive_reindex(products: list[Product]) -> None:
    store = LocalVectorStore(dimension=DIM)
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), store)
    subset = products[:2]
    searcher.index(subset)
    store.put(
        [VectorRecord(r.key, r.vector, {**r.metadata, "tags": ["summer"]}) for r in store.records()]
    )

    again = searcher.index(subset)
    assert (again.skipped_unchanged, again.vectors_written, again.embed_calls) == (2, 0, 0)
    assert all(r.metadata["tags"] == ["summer"] for r in store.records())
    hits = searcher.search("dress", filter={"tags": "summer"}, top_k=5)
    assert {h.product_id for h in hits} == {p.product_id for p in subset}
    assert hits[0].metadata["tags"] == ["summer"]
    assert "metadata_hash" not in hits[0].metadata and "content_hash" not in hits[0].metadata

    # Dropping one of the product's own metadata keys rewrites it (no embedding): the key is
    # gone, and the tags written by another tool are carried over.
    slim = subset[0].model_copy(update={"metadata": {"brand": subset[0].metadata["brand"]}})
    report = searcher.index([slim, subset[1]])
    assert (report.indexed, report.skipped_unchanged, report.embed_calls) == (1, 1, 0)
    view = searcher.get_product(slim.product_id)
    assert view is not None
    assert view.metadata == {"brand": subset[0].metadata["brand"], "tags": ["summer"]}


def test_single_modality_products_get_a_combined_vector(env: Env, tmp_path: Path) -> None:
    searcher = env.searcher()
    from PIL import Image

    img = tmp_path / "green.png"
    Image.new("RGB", (64, 64), (30, 160, 60)).save(img)
    searcher.index(
        [
            Product(product_id="t", text="a plain white mug"),
            Product(product_id="i", image=str(img)),
        ]
    )
    got = {r.key: r.vector for r in env.store.get(sorted(env.store.keys())).records}
    assert sorted(got) == ["combined-i", "combined-t", "image-i", "text-t"]
    np.testing.assert_allclose(got["combined-t"], got["text-t"], atol=1e-6)
    np.testing.assert_allclose(got["combined-i"], got["image-i"], atol=1e-6)
    only_image = searcher.search(image=str(img), search_mode="all", top_k=2)
    assert only_image[0].product_id == "i" and only_image[0].text == ""


# ------------------------------------------------------------------------- failures


def test_per_item_failures_are_reported_and_the_rest_lands(
    env: Env, products: list[Product], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    batch = [
        *products[:5],
        Product(product_id="corrupt", text="blue mug", image=str(corrupt)),
        Product(product_id="missing", text="red mug", image=str(tmp_path / "nope.jpg")),
        Product(product_id="huge", text="x", metadata={"brand": "b" * 3000}),
    ]
    report = env.searcher().index(batch)
    failed = {f.product_id: f for f in report.failed}
    assert sorted(failed) == ["corrupt", "huge", "missing"]
    assert failed["corrupt"].kind == "image"
    assert failed["missing"].kind == "input" and "nope.jpg" in failed["missing"].reason
    assert failed["huge"].kind == "metadata" and "brand" in failed["huge"].reason
    assert report.indexed == 5
    assert _all_keys(env.store) == _expected_keys(products[:5])
    if env.bedrock is not None:
        # The corrupt image is refused locally; the product never reaches Bedrock with it.
        assert all("image" not in r or r["image"]["format"] == "jpeg" for r in env.embed_requests())


def test_rejected_text_is_reported(nova_env: Env, products: list[Product]) -> None:
    assert nova_env.bedrock is not None
    nova_env.bedrock.fail_next("ValidationException", message="input text was rejected")
    report = nova_env.searcher(max_concurrency=1).index(products[:3])
    assert [(f.product_id, f.kind) for f in report.failed] == [(products[0].product_id, "text")]
    assert "rejected" in report.failed[0].reason
    assert report.indexed == 2
    retry = nova_env.searcher().index(products[:3])
    assert (retry.indexed, retry.skipped_unchanged, retry.failed) == (1, 2, [])


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException"])
def test_errors_concerning_every_product_stop_the_run(code: str, products: list[Product]) -> None:
    bedrock = FakeBedrock()
    no_wait = RetryPolicy(max_attempts=3, sleep=lambda s: None)
    embedder = NovaEmbeddings(client=bedrock.client(), dimension=DIM, retry_policy=no_wait)
    store = LocalVectorStore(dimension=DIM)
    pauses: list[float] = []
    policy = IngestPolicy(pause_budget_seconds=20, sleep=pauses.append)
    searcher = CrossmodalSearcher(embedder, store, max_concurrency=2, ingest_policy=policy)
    bedrock.fail_always(code)
    with pytest.raises(IngestStoppedError) as info:
        searcher.index(products[:12])
    cause = info.value.__cause__
    assert isinstance(cause, ServiceError) and cause.code == code
    assert info.value.report.indexed == 0 and info.value.report.failed
    assert all(f.retryable for f in info.value.report.failed)
    # Access denied on product after product stops at the tenth; throttling pauses first
    # (5 s, then 10 s), and stops when the next pause would pass the 20 s budget.
    assert pauses == ([] if code == "AccessDeniedException" else [5.0, 10.0])
    assert list(store.keys()) == []
    # Once the service answers again, the rerun indexes everything.
    bedrock.reset_failures()
    assert searcher.index(products[:10]).indexed == 10


class StopsAfter(BaseEmbedder):
    """An Embedder that delegates to ``inner`` and raises ``error`` from input ``n + 1`` on."""

    def __init__(self, inner: Embedder, n: int, error: Exception) -> None:
        self.inner, self.n, self.error, self.calls = inner, n, error, 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def _embed(
        self, items: Sequence[EmbedInput], *, purpose: EmbeddingPurpose, dimension: int
    ) -> npt.NDArray[np.float32]:
        rows = []
        for item in items:
            self.calls += 1
            if self.calls > self.n:
                raise self.error
            if item.text is not None:
                rows.append(self.inner.embed_text(item.text, purpose=purpose, dimension=dimension))
            else:
                assert item.media is not None
                image = item.media.source
                assert not isinstance(image, S3Source)
                rows.append(self.inner.embed_image(image, purpose=purpose, dimension=dimension))
        return np.stack(rows)


def test_vectors_embedded_before_a_fatal_error_are_kept(products: list[Product]) -> None:
    from crossmodal_search.errors import AccessDeniedError

    store = LocalVectorStore(dimension=DIM)
    denied = AccessDeniedError("no access", code="AccessDeniedException")
    flaky = StopsAfter(OfflineEmbedder(DIM), 6, denied)
    policy = IngestPolicy(max_consecutive_failures=3)
    # max_concurrency 1, and a batch of 500 is not yet full when the run stops.
    searcher = CrossmodalSearcher(flaky, store, max_concurrency=1, ingest_policy=policy)
    with pytest.raises(IngestStoppedError) as info:
        searcher.index(products[:10])
    assert isinstance(info.value.__cause__, AccessDeniedError)
    assert [f.product_id for f in info.value.report.failed] == [p.product_id for p in products[3:6]]
    assert _all_keys(store) == _expected_keys(products[:3])  # 3 products = 6 embedding calls
    report = CrossmodalSearcher(OfflineEmbedder(DIM), store).index(products[:10])
    assert (report.skipped_unchanged, report.indexed, report.embed_calls) == (3, 7, 14)


def test_duplicate_ids_and_wrong_types_rejected_before_any_call(
    nova_local: Env, products: list[Product]
) -> None:
    nova_env = nova_local
    assert nova_env.bedrock is not None
    searcher = nova_env.searcher()
    with pytest.raises(InvalidInputError, match="appears twice"):
        searcher.index([products[0], products[1], products[0]])
    with pytest.raises(InvalidInputError, match="expected a Product"):
        searcher.index([{"product_id": "x", "text": "y"}])  # type: ignore[list-item]
    assert nova_env.bedrock.calls == 0 and list(nova_env.store.keys()) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, InvalidInputError),
        ({"text": "   "}, InvalidInputError),
        ({"text": "x", "top_k": 0}, InvalidInputError),
        ({"text": "x", "top_k": 101}, InvalidInputError),
        ({"text": "x", "top_k": True}, InvalidInputError),
        ({"text": "x", "text_weight": -0.1}, InvalidInputError),
        ({"text": "x", "text_weight": math.nan}, InvalidInputError),
        ({"text": "x", "search_mode": "movie"}, InvalidInputError),
        ({"text": "x", "fusion": "max"}, InvalidInputError),
        ({"text": "x", "filter": {"$nope": 1}}, InvalidFilterError),
        ({"text": "x", "filter": {"text": "red"}}, InvalidFilterError),  # non-filterable key
        ({"text": "x", "filter": ["color"]}, InvalidInputError),
        ({"image": "/no/such/photo.jpg"}, UnsupportedMediaError),
    ],
)
def test_search_arguments_validated_before_any_call(
    nova_local: Env, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    assert nova_local.bedrock is not None
    with pytest.raises(error):
        nova_local.searcher().search(**kwargs)
    assert nova_local.bedrock.calls == 0


def test_constructor_rejects_mismatched_dimension_and_bad_settings() -> None:
    store = LocalVectorStore(dimension=DIM)
    with pytest.raises(ConfigurationError, match="dimension"):
        CrossmodalSearcher(OfflineEmbedder(256), store)
    bad: list[dict[str, Any]] = [{"batch_size": 0}, {"max_concurrency": 0}]
    bad.append({"combined_text_weight": 2})
    for kwargs in bad:
        with pytest.raises(ConfigurationError):
            CrossmodalSearcher(OfflineEmbedder(DIM), store, **kwargs)


def test_searching_with_another_model_than_the_index_is_refused(products: list[Product]) -> None:
    store = LocalVectorStore(dimension=DIM)
    CrossmodalSearcher(OfflineEmbedder(DIM), store).index(products[:3])
    nova = NovaEmbeddings(client=FakeBedrock().client(), dimension=DIM)
    with pytest.raises(ConfigurationError, match="offline"):
        CrossmodalSearcher(nova, store).search("red dress")


# ------------------------------------------------------------------------- estimate, progress


def test_dry_run_estimates_without_embedding_or_writing(
    nova_env: Env, products: list[Product]
) -> None:
    assert nova_env.bedrock is not None
    searcher = nova_env.searcher(batch_size=50)
    report = searcher.index(products, dry_run=True)
    est = report.estimate
    assert report.dry_run and est is not None
    assert (est.products, est.to_embed, est.unchanged) == (38, 38, 0)
    # Every photo counts: the six bags have two extra photos each.
    assert (est.text_calls, est.image_calls, est.embed_calls) == (38, 38 + 12, 76 + 12)
    assert est.vectors == 126 and est.put_requests == 3
    assert est.vector_bytes == 126 * DIM * 4
    assert est.image_bytes == sum(Path(i).stat().st_size for p in products for i in p.all_images)
    assert est.metadata_bytes > 0
    assert nova_env.bedrock.calls == 0 and list(nova_env.store.keys()) == []

    real = searcher.index(products)
    assert real.embed_calls == est.embed_calls == nova_env.bedrock.calls
    assert real.vectors_written == est.vectors
    after = searcher.estimate(products)
    assert (after.unchanged, after.embed_calls, after.vectors) == (38, 0, 0)


def test_progress_reports_every_product(products: list[Product]) -> None:
    seen: list[tuple[int, int]] = []
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM))
    searcher.index(products[:10], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 10) for i in range(1, 11)]
    seen.clear()
    searcher.index(products[:10], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10)


def test_embedding_runs_with_bounded_concurrency(products: list[Product]) -> None:
    fake = FakeBedrock(latency=0.02)
    embedder = NovaEmbeddings(client=fake.client(), dimension=DIM)
    searcher = CrossmodalSearcher(embedder, LocalVectorStore(dimension=DIM), max_concurrency=3)
    searcher.index(products[:12])
    assert 1 < fake.max_in_flight <= 3


def test_batches_are_full_size(products: list[Product]) -> None:
    sizes: list[int] = []

    class Recording(FailingPutStore):
        def put(self, records: Iterable[VectorRecord]) -> None:
            batch = list(records)
            sizes.append(len(batch))
            self.inner.put(batch)

    store = Recording(LocalVectorStore(dimension=DIM), fail_on=0)
    CrossmodalSearcher(OfflineEmbedder(DIM), store, batch_size=25).index(products)
    assert sizes == [25, 25, 25, 25, 25, 1]


def test_similarity_from_distance_per_metric(products: list[Product]) -> None:
    cos = _make_env("offline", "local", "cosine")
    euc = _make_env("offline", "local", "euclidean")
    a = cos.searcher()
    b = euc.searcher()
    a.index(products[:12])
    b.index(products[:12])
    ra = a.search("blue mug", top_k=5)
    rb = b.search("blue mug", top_k=5)
    assert [r.product_id for r in ra] == [r.product_id for r in rb]
    for x, y in zip(ra, rb, strict=True):
        assert x.similarity == pytest.approx(1 - x.distance)
        assert y.similarity == pytest.approx(1 - y.distance**2 / 2)
        assert x.similarity == pytest.approx(y.similarity, abs=1e-4)


# --------------------------------------------------------------- grouping past topK = 100


def _grouping_catalog() -> tuple[OfflineEmbedder, list[VectorRecord]]:
    """300 products, each a text and a combined vector plus 1-3 video segments (~1,500)."""
    embedder = OfflineEmbedder(64)
    colours = ["red", "blue", "green", "black", "white", "yellow"]
    things = ["dress", "mug", "lamp", "sneakers", "chair"]
    records: list[VectorRecord] = []
    for i in range(300):
        pid = f"P{i:03d}"
        text = f"{colours[i % 6]} {things[i % 5]} model {i}"
        vec = embedder.embed_text(text)
        base: dict[str, MetadataValue] = {
            "product_id": pid,
            "text": text,
            "embedding_model": embedder.model_id,
        }
        records.append(VectorRecord.create(f"text-{pid}", vec, {**base, "type": "text"}))
        records.append(VectorRecord.create(f"combined-{pid}", vec, {**base, "type": "combined"}))
        for s in range(1 + i % 3):
            seg = embedder.embed_text(f"{text} scene {s} {things[(i + s) % 5]}")
            md: dict[str, MetadataValue] = {**base, "type": "video", "segment_start": 5.0 * s}
            records.append(VectorRecord.create(f"video-{pid}-{s}", seg, md))
    return embedder, records


def _best_per_product(
    records: Sequence[VectorRecord], query: np.ndarray, types: set[str], keep: set[str]
) -> dict[str, float]:
    """Exact grouping by brute force: each product's distance to its closest vector."""
    best: dict[str, float] = {}
    for r in records:
        pid = str(r.metadata["product_id"])
        if r.metadata["type"] in types and pid in keep:
            d = 1.0 - float(np.dot(r.vector, query) / np.linalg.norm(r.vector))
            best[pid] = min(best.get(pid, math.inf), d)
    return best


@pytest.mark.parametrize(
    ("mode", "types"),
    [("all", {"text", "combined", "video"}), ("video", {"video"}), ("combined", {"combined"})],
)
def test_grouping_returns_top_k_products_beyond_the_store_top_k_cap(
    mode: str, types: set[str]
) -> None:
    embedder, records = _grouping_catalog()
    fake = FakeS3Vectors()
    store = S3VectorsStore("shop-vectors", "products", client=fake.client(), dimension=64)
    store.put(records)
    searcher = CrossmodalSearcher(embedder, store)
    query = _unit_np(embedder.embed_text("red dress"))
    everyone = {f"P{i:03d}" for i in range(300)}
    odd = {f"P{i:03d}" for i in range(1, 300, 2)}

    for user_filter, keep in ((None, everyone), ({"product_id": {"$in": sorted(odd)}}, odd)):
        fake.calls.clear()
        hits = searcher.search("red dress", search_mode=mode, top_k=100, filter=user_filter)  # type: ignore[arg-type]
        assert len(hits) == 100 and len({h.product_id for h in hits}) == 100
        # Exactly the 100 closest products (up to float32 rounding), each at its best vector.
        best = _best_per_product(records, query, types, keep)
        hundredth = sorted(best.values())[99]
        for h in hits:
            assert h.distance == pytest.approx(best[h.product_id], abs=1e-5)
            assert h.distance <= hundredth + 1e-5
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        if mode == "combined":  # one vector per product: one query is enough
            assert fake.calls["query_vectors"] == 1

    # a small top_k is still served by a single query
    fake.calls.clear()
    assert len(searcher.search("red dress", search_mode=mode, top_k=5)) == 5  # type: ignore[arg-type]
    assert fake.calls["query_vectors"] == 1


def _unit_np(v: np.ndarray) -> np.ndarray:
    unit: np.ndarray = v / np.linalg.norm(v)
    return unit


# ------------------------------------------------------------------------------ prune


def test_prune_deletes_products_missing_from_the_catalog() -> None:
    embedder = OfflineEmbedder(64)
    store = LocalVectorStore(dimension=64)
    searcher = CrossmodalSearcher(embedder, store)
    catalog = [
        Product(product_id="P-KETTLE", text="steel kettle"),
        Product(product_id="mug", text="blue mug"),
        Product(product_id="lamp", text="red lamp"),
        Product(product_id="lamp-audio", text="lamp with a speaker"),
    ]
    searcher.index(catalog)
    seg = embedder.embed_text("descaling the kettle")
    md: dict[str, MetadataValue] = {"type": "video", "product_id": "lamp"}
    store.put(
        [
            VectorRecord.create("video-lamp-0", seg, md),
            VectorRecord.create("video-lamp-audio-0", seg, md),  # AUDIO_VIDEO_SEPARATE
            VectorRecord.create("video-P-KETTLE-0", seg, {**md, "product_id": "P-KETTLE"}),
            VectorRecord.create("foreign-key", seg, {"note": "not written by the searcher"}),
        ]
    )
    kept = [p for p in catalog if p.product_id != "lamp"]

    dry = searcher.index(kept, dry_run=True, prune=True)
    assert dry.pruned == 1 and len(store) == 4 * 2 + 4  # nothing deleted

    plain = searcher.index(kept)  # without prune, a missing product stays searchable
    assert plain.pruned == 0 and searcher.get_product("lamp") is not None

    report = searcher.index(kept, prune=True)
    assert (report.skipped_unchanged, report.pruned, report.vectors_deleted) == (3, 1, 4)
    assert searcher.get_product("lamp") is None
    assert "red lamp" not in {h.text for h in searcher.search("red lamp", top_k=10)}
    assert sorted(store.keys()) == sorted(
        ["foreign-key", "video-P-KETTLE-0"]
        + [f"{t}-{pid}" for pid in ("P-KETTLE", "mug", "lamp-audio") for t in ("text", "combined")]
    )
    # a rerun has nothing left to prune
    assert searcher.index(kept, prune=True).pruned == 0


# ----------------------------------------------------------------- error consistency


@pytest.mark.parametrize("embedder_kind", ["offline", "nova"])
def test_a_missing_image_is_the_same_error_from_embed_image_and_search(
    embedder_kind: str, tmp_path: Path
) -> None:
    env = _make_env(embedder_kind, "local")
    searcher = env.searcher()
    searcher.index([Product("p1", "red dress")])
    missing = tmp_path / "no-such-photo.jpg"
    with pytest.raises(UnsupportedMediaError, match="image file not found") as from_embed:
        env.embedder.embed_image(str(missing))
    with pytest.raises(UnsupportedMediaError, match="image file not found") as from_search:
        searcher.search(image=str(missing))
    assert type(from_embed.value) is type(from_search.value) is UnsupportedMediaError


def test_the_offline_embedder_names_itself_for_an_s3_image() -> None:
    with pytest.raises(UnsupportedMediaError, match=r"offline embedder.*local.*Nova"):
        OfflineEmbedder(64).embed_image("s3://shop-images/dress.jpg")


def test_metadata_key_limit_counts_the_keys_the_searcher_adds() -> None:
    searcher = CrossmodalSearcher(OfflineEmbedder(64), LocalVectorStore(dimension=64))
    many: dict[str, MetadataValue] = {f"k{i}": i for i in range(48)}
    report = searcher.index([Product("p1", "red dress", metadata=many)])
    (failure,) = report.failed
    assert failure.kind == "metadata"
    assert "48 product keys + 6 added by the searcher" in failure.reason
    assert "limit of 50" in failure.reason
    assert "at most 44 product keys" in failure.reason
    fits = {f"k{i}": i for i in range(44)}
    assert not searcher.index([Product("p2", "blue mug", metadata=fits)]).failed
