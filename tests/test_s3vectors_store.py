"""S3VectorsStore against FakeS3Vectors: botocore's real serialisation, a fake service behind it."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.errors import (
    AccessDeniedError,
    ConfigurationError,
    DimensionMismatchError,
    IndexMismatchError,
    InvalidFilterError,
    InvalidInputError,
    MetadataLimitError,
    PartialWriteError,
    ResourceNotFoundError,
    RetryExhaustedError,
    ServiceError,
    ServiceValidationError,
)
from crossmodal_search.stores import VectorRecord
from crossmodal_search.stores._s3vectors import S3VectorsStore
from crossmodal_search.testing import FakeS3Vectors

BUCKET, INDEX = "shop-vectors", "products"
MiB = 1024 * 1024


class Sleeps:
    """A RetryPolicy sleep that records delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.delays.append(seconds)


@pytest.fixture
def fake() -> FakeS3Vectors:
    return FakeS3Vectors()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_store(fake: FakeS3Vectors, sleeps: Sleeps | None = None, **kw: Any) -> S3VectorsStore:
    kw.setdefault("dimension", 8)
    kw.setdefault("retry_policy", RetryPolicy(max_attempts=4, sleep=sleeps or Sleeps()))
    client = kw.pop("client", None) or fake.client()
    return S3VectorsStore(BUCKET, INDEX, client=client, **kw)


def records(n: int, dim: int = 8, *, seed: int = 0, prefix: str = "k") -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        VectorRecord.create(f"{prefix}{i}", vectors[i], {"i": i, "even": i % 2 == 0})
        for i in range(n)
    ]


def put_requests(fake: FakeS3Vectors) -> list[Any]:
    return fake.operation_requests("put_vectors")


# -- batching -------------------------------------------------------------------------------------


def test_put_500_vectors_of_3072_dims_is_split_by_bytes_under_the_20_mib_limit(
    fake: FakeS3Vectors,
) -> None:
    store = make_store(fake, dimension=3072)
    recs = records(500, 3072)

    store.put(recs)

    reqs = put_requests(fake)
    assert len(reqs) >= 2  # 500 x 3072 floats is ~30 MiB of JSON: one call cannot carry it
    assert all(r.size <= 20 * MiB for r in reqs)
    assert sum(len(r.params["vectors"]) for r in reqs) == 500
    assert fake.vector_count(BUCKET, INDEX) == 500
    got = store.get(["k0", "k499"])
    np.testing.assert_array_equal(got.records[1].vector, recs[499].vector)


def test_put_is_split_by_count_at_500_vectors(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=4)
    store.put(records(1201, 4))

    sizes = sorted(len(r.params["vectors"]) for r in put_requests(fake))
    assert sizes == [201, 500, 500]
    assert fake.vector_count(BUCKET, INDEX) == 1201


def test_put_respects_a_smaller_request_byte_budget(fake: FakeS3Vectors) -> None:
    budget = 64 * 1024
    store = make_store(fake, dimension=256, max_request_bytes=budget)
    store.put(records(100, 256))

    reqs = put_requests(fake)
    assert len(reqs) > 1
    assert all(r.size <= budget for r in reqs)
    assert fake.vector_count(BUCKET, INDEX) == 100


def test_puts_run_in_parallel_up_to_max_concurrency() -> None:
    fake = FakeS3Vectors(latency=0.2)
    store = make_store(fake, dimension=4, max_concurrency=3)
    store.put(records(3000, 4))  # 6 batches of 500

    assert len(put_requests(fake)) == 6
    assert 2 <= fake.max_in_flight <= 3


def test_puts_are_sequential_with_max_concurrency_one() -> None:
    fake = FakeS3Vectors(latency=0.01)
    store = make_store(fake, dimension=4, max_concurrency=1)
    store.put(records(1500, 4))
    assert fake.max_in_flight == 1


def test_delete_is_split_at_500_keys_and_ignores_unknown_keys(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=4)
    store.put(records(1200, 4))

    store.delete([f"k{i}" for i in range(1100)] + ["never-stored"])

    assert fake.calls["delete_vectors"] == 3
    assert sorted(store.keys()) == sorted(f"k{i}" for i in range(1100, 1200))


# -- failures and retries -------------------------------------------------------------------------


def test_partial_failure_names_written_and_failed_keys(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=4, max_concurrency=1)
    recs = records(1000, 4)
    fake.fail_next("put_vectors", "AccessDeniedException", after=1)

    with pytest.raises(PartialWriteError) as info:
        store.put(recs)

    err = info.value
    assert list(err.written) == [f"k{i}" for i in range(500)]
    assert list(err.failed) == [f"k{i}" for i in range(500, 1000)]
    assert isinstance(err.__cause__, AccessDeniedError)
    assert fake.vector_count(BUCKET, INDEX) == 500
    assert store.get(["k0", "k999"]).missing == ("k999",)


def test_batches_not_yet_sent_after_a_failure_are_not_sent_and_reported_failed(
    fake: FakeS3Vectors,
) -> None:
    store = make_store(fake, dimension=4, max_concurrency=1)
    fake.fail_next("put_vectors", "AccessDeniedException", after=1)

    with pytest.raises(PartialWriteError) as info:
        store.put(records(1400, 4))  # batches of 500, 500, 400

    assert fake.calls["put_vectors"] == 2  # the third batch was never sent
    assert len(info.value.written) == 500
    assert list(info.value.failed) == [f"k{i}" for i in range(500, 1400)]
    assert fake.vector_count(BUCKET, INDEX) == 500


def test_partial_failure_after_retries_chains_the_exhausted_error(
    fake: FakeS3Vectors, sleeps: Sleeps
) -> None:
    store = make_store(fake, sleeps, dimension=4, max_concurrency=1)
    fake.fail_next("put_vectors", "ServiceUnavailableException", times=10, after=1)

    with pytest.raises(PartialWriteError) as info:
        store.put(records(700, 4))

    assert len(info.value.written) == 500
    assert len(info.value.failed) == 200
    cause = info.value.__cause__
    assert isinstance(cause, RetryExhaustedError)
    assert cause.attempts == 4
    assert fake.calls["put_vectors"] == 1 + 4
    assert len(sleeps.delays) == 3


def test_failure_of_the_only_batch_raises_the_service_error(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    fake.fail_next("put_vectors", "AccessDeniedException")

    with pytest.raises(AccessDeniedError):
        store.put(records(10))
    assert fake.vector_count(BUCKET, INDEX) == 0


def test_throttled_put_is_retried_then_succeeds(fake: FakeS3Vectors, sleeps: Sleeps) -> None:
    store = make_store(fake, sleeps)
    fake.fail_next("put_vectors", "TooManyRequestsException", times=2)

    store.put(records(10))

    assert fake.calls["put_vectors"] == 3
    assert len(sleeps.delays) == 2
    assert fake.vector_count(BUCKET, INDEX) == 10


@pytest.mark.parametrize(
    "code",
    [
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "InternalServerException",
        "RequestTimeoutException",
    ],
)
def test_transient_errors_are_retried(fake: FakeS3Vectors, sleeps: Sleeps, code: str) -> None:
    store = make_store(fake, sleeps)
    store.put(records(3))
    fake.fail_next("query_vectors", code)
    assert len(store.query(np.ones(8), top_k=3)) == 3
    assert fake.calls["query_vectors"] == 2
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("AccessDeniedException", AccessDeniedError),
        ("NotFoundException", ResourceNotFoundError),
        ("ValidationException", ServiceValidationError),
        ("ServiceQuotaExceededException", ServiceValidationError),
        ("KmsDisabledException", ServiceValidationError),
        ("ConflictException", ServiceError),
    ],
)
def test_other_errors_are_mapped_and_not_retried(
    fake: FakeS3Vectors, sleeps: Sleeps, code: str, error: type[ServiceError]
) -> None:
    store = make_store(fake, sleeps)
    fake.fail_next("put_vectors", code)
    with pytest.raises(error) as info:
        store.put(records(3))
    assert info.value.code == code
    assert info.value.request_id  # the AWS request id is kept
    assert isinstance(info.value.__cause__, ClientError)
    assert fake.calls["put_vectors"] == 1
    assert sleeps.delays == []


def test_a_store_built_from_a_session_tags_the_user_agent_and_only_we_retry() -> None:
    fake = FakeS3Vectors()
    store = S3VectorsStore(
        BUCKET,
        INDEX,
        session=fake.session(),
        dimension=8,
        retry_policy=RetryPolicy(max_attempts=1),
    )
    assert "crossmodal-search/" in fake.requests[0].user_agent
    fake.fail_next("put_vectors", "TooManyRequestsException")

    with pytest.raises(RetryExhaustedError) as info:
        store.put(records(3))

    assert info.value.attempts == 1
    assert fake.calls["put_vectors"] == 1  # botocore did not retry behind our back


def test_validation_errors_from_the_service_are_not_retried(
    fake: FakeS3Vectors, sleeps: Sleeps
) -> None:
    store = make_store(fake, sleeps)
    fake.fail_next("query_vectors", "ValidationException")

    with pytest.raises(Exception, match="ValidationException"):
        store.query(np.ones(8), top_k=1)
    assert fake.calls["query_vectors"] == 1
    assert sleeps.delays == []


def test_a_throttled_store_sends_fewer_requests_at_once_until_successes_grow_it_back() -> None:
    # Counted in requests, not timed: one throttled request, then puts whose limits follow
    # from the number of successes alone, whatever order the threads finish in.
    fake = FakeS3Vectors(latency=0.02)  # slow enough that a put's 8 requests overlap
    store = make_store(fake, dimension=4, max_concurrency=8)
    assert store.concurrency_limit == 8
    fake.fail_next("put_vectors", "TooManyRequestsException")
    store.put(records(500, 4))  # one PutVectors request: throttled, then retried
    assert fake.vector_count(BUCKET, INDEX) == 500
    assert store.concurrency_limit == 4  # halved; the retry is the 1st of 4 successes to grow it

    fake.max_in_flight = 0
    # 8 requests: 4 at once; 5 after this put's 3rd success; 6 only after its 8th, the last.
    store.put(records(4000, 4, prefix="m"))
    assert fake.vector_count(BUCKET, INDEX) == 4500
    assert store.concurrency_limit == 6
    assert fake.max_in_flight <= 5  # not the 8 threads the put could run
    for _ in range(2):  # 16 successes in a row: 6 -> 7 -> 8, the ceiling
        store.put(records(4000, 4, prefix="n"))
    assert store.concurrency_limit == 8


class ManualClock:
    """Time that moves only when the retry policy sleeps: throttling without wall-clock flakes."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_token_bucket_throttle_is_absorbed_by_the_retry_policy() -> None:
    clock = ManualClock()
    fake = FakeS3Vectors(throttle=40.0, burst=1.0, clock=clock)
    store = S3VectorsStore(
        BUCKET,
        INDEX,
        client=fake.client(),
        dimension=4,
        max_concurrency=4,
        retry_policy=RetryPolicy(max_attempts=10, initial_backoff=0.05, sleep=clock.sleep),
    )
    clock.sleep(1.0)  # index setup used the one token of burst; let it refill
    store.put(records(2500, 4))  # 5 batches against 1 token of burst

    assert fake.vector_count(BUCKET, INDEX) == 2500
    assert fake.calls["put_vectors"] > 5  # some were throttled (429) and sent again


# -- validation before any call -------------------------------------------------------------------

BAD_RECORDS: list[tuple[str, list[VectorRecord], type[Exception]]] = [
    ("wrong dimension", [VectorRecord.create("a", np.ones(7))], DimensionMismatchError),
    ("NaN", [VectorRecord.create("a", [np.nan] + [1.0] * 7)], InvalidInputError),
    ("infinity", [VectorRecord.create("a", [np.inf] + [1.0] * 7)], InvalidInputError),
    ("zero vector on cosine", [VectorRecord.create("a", np.zeros(8))], InvalidInputError),
    ("empty key", [VectorRecord.create("", np.ones(8))], InvalidInputError),
    ("key over 1024 characters", [VectorRecord.create("k" * 1025, np.ones(8))], InvalidInputError),
    (
        "filterable metadata over 2 KB",
        [VectorRecord.create("a", np.ones(8), {"title": "x" * 2100})],
        MetadataLimitError,
    ),
    (
        "metadata over 40 KB",
        [VectorRecord.create("a", np.ones(8), {"description": "x" * 41000})],
        MetadataLimitError,
    ),
    (
        "51 metadata keys",
        [VectorRecord.create("a", np.ones(8), {f"m{i}": i for i in range(51)})],
        MetadataLimitError,
    ),
    (
        "nested object",
        [VectorRecord.create("a", np.ones(8), {"spec": {"w": 1}})],  # type: ignore[dict-item]
        MetadataLimitError,
    ),
    (
        "duplicate keys in one write",
        [VectorRecord.create("a", np.ones(8)), VectorRecord.create("a", np.ones(8))],
        InvalidInputError,
    ),
]


@pytest.mark.parametrize(
    ("bad", "error"), [(b[1], b[2]) for b in BAD_RECORDS], ids=[b[0] for b in BAD_RECORDS]
)
def test_bad_records_are_rejected_before_any_put_call(
    fake: FakeS3Vectors, bad: list[VectorRecord], error: type[Exception]
) -> None:
    store = make_store(fake)
    good = records(600)  # the bad record comes after two batches' worth of good ones

    with pytest.raises(error):
        store.put([*good, *bad])

    assert fake.calls["put_vectors"] == 0
    assert fake.vector_count(BUCKET, INDEX) == 0


def test_metadata_limit_error_names_the_record_and_the_key(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    with pytest.raises(MetadataLimitError) as info:
        store.put([VectorRecord.create("sku-9", np.ones(8), {"title": "é" * 1100})])
    assert info.value.record_key == "sku-9"
    assert info.value.metadata_key == "title"
    assert fake.calls["put_vectors"] == 0


def test_a_long_description_is_non_filterable_by_default(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    assert store.non_filterable_metadata_keys >= {"description", "text"}
    index = fake.client().get_index(vectorBucketName=BUCKET, indexName=INDEX)["index"]
    assert set(index["metadataConfiguration"]["nonFilterableMetadataKeys"]) == set(
        store.non_filterable_metadata_keys
    )

    store.put([VectorRecord.create("a", np.ones(8), {"description": "long " * 2000})])
    assert fake.vector_count(BUCKET, INDEX) == 1

    with pytest.raises(InvalidFilterError):
        store.query(np.ones(8), filter={"description": "long"})
    assert fake.calls["query_vectors"] == 0


def test_top_k_over_100_is_an_error_before_the_call(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    store.put(records(5))
    with pytest.raises(InvalidInputError, match="100"):
        store.query(np.ones(8), top_k=101)
    assert fake.calls["query_vectors"] == 0
    assert len(store.query(np.ones(8), top_k=100)) == 5


@pytest.mark.parametrize(
    ("vector", "error"),
    [
        (np.ones(9), DimensionMismatchError),
        (np.zeros(8), InvalidInputError),
        ([np.nan] * 8, InvalidInputError),
    ],
    ids=["dimension", "zero-on-cosine", "nan"],
)
def test_bad_query_vectors_are_rejected_before_the_call(
    fake: FakeS3Vectors, vector: Any, error: type[Exception]
) -> None:
    store = make_store(fake)
    with pytest.raises(error):
        store.query(vector)
    assert fake.calls["query_vectors"] == 0


def test_query_many_validates_every_row_before_the_first_call(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    store.put(records(10))
    queries = np.ones((4, 8))
    queries[2, 0] = np.nan
    with pytest.raises(InvalidInputError, match="query 2"):
        store.query_many(queries)
    assert fake.calls["query_vectors"] == 0
    assert len(store.query_many(np.ones((4, 8)), top_k=2)) == 4
    assert fake.calls["query_vectors"] == 4


def test_invalid_filter_is_rejected_before_the_call(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    bads: list[dict[str, Any]] = [
        {"price": {"$gt": "10"}},
        {"tag": {"$in": []}},
        {"$not": {"a": 1}},
    ]
    for bad in bads:
        with pytest.raises(InvalidFilterError):
            store.query(np.ones(8), filter=bad)
    assert fake.calls["query_vectors"] == 0


def test_numpy_scalars_in_metadata_and_filters_reach_boto3_as_plain_python(
    fake: FakeS3Vectors,
) -> None:
    store = make_store(fake)
    metadata = {
        "price": np.float32(9.5),
        "qty": np.int64(3),
        "ok": np.bool_(True),
        "sizes": np.array([36, 38]),
    }
    store.put([VectorRecord.create("a", np.ones(8, dtype=np.float32), metadata)])  # type: ignore[arg-type]

    sent = put_requests(fake)[0].params["vectors"][0]
    assert sent["metadata"] == {"price": 9.5, "qty": 3, "ok": True, "sizes": [36, 38]}
    matches = store.query(np.ones(8), top_k=1, filter={"qty": np.int64(3), "sizes": np.int64(38)})
    assert [m.key for m in matches] == ["a"]
    assert fake.operation_requests("query_vectors")[0].params["filter"] == {"qty": 3, "sizes": 38}


def test_query_sends_the_filter_unchanged_and_asks_for_distance_and_metadata(
    fake: FakeS3Vectors,
) -> None:
    store = make_store(fake)
    store.put(records(20))
    flt = {"$and": [{"even": True}, {"i": {"$gte": 10}}]}

    matches = store.query(records(1)[0].vector, top_k=3, filter=flt)

    params = fake.operation_requests("query_vectors")[0].params
    assert params["filter"] == flt
    assert params["topK"] == 3
    assert params["returnDistance"] is True
    assert params["returnMetadata"] is True
    assert len(matches) == 3
    assert all(m.metadata["even"] is True and m.metadata["i"] in range(10, 20) for m in matches)
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)


def test_query_distances_are_cosine_distance(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=2)
    store.put(
        [
            VectorRecord.create("same", [2.0, 0.0]),
            VectorRecord.create("orthogonal", [0.0, 3.0]),
            VectorRecord.create("opposite", [-1.0, 0.0]),
        ]
    )
    matches = store.query([1.0, 0.0], top_k=3)
    assert [m.key for m in matches] == ["same", "orthogonal", "opposite"]
    np.testing.assert_allclose([m.distance for m in matches], [0.0, 1.0, 2.0], atol=1e-6)


def test_query_distances_are_l2_on_a_euclidean_index(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=2, distance_metric="euclidean")
    store.put([VectorRecord.create("a", [3.0, 4.0]), VectorRecord.create("b", [0.0, 1.0])])
    matches = store.query([0.0, 0.0], top_k=2)
    assert [(m.key, round(m.distance, 6)) for m in matches] == [("b", 1.0), ("a", 5.0)]


# -- index lifecycle ------------------------------------------------------------------------------


def test_store_creates_bucket_and_index_with_requested_configuration(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=16, distance_metric="euclidean")
    index = fake.client().get_index(vectorBucketName=BUCKET, indexName=INDEX)["index"]
    assert (index["dimension"], index["distanceMetric"]) == (16, "euclidean")
    assert (store.dimension, store.distance_metric) == (16, "euclidean")


def test_compatible_existing_index_is_reused(fake: FakeS3Vectors) -> None:
    client = fake.client()
    first = make_store(fake, client=client)
    first.put(records(3))
    creates = fake.calls["create_index"] + fake.calls["create_vector_bucket"]

    second = make_store(fake, client=client)

    assert fake.calls["create_index"] + fake.calls["create_vector_bucket"] == creates
    assert sorted(second.keys()) == ["k0", "k1", "k2"]


def test_existing_bucket_is_reused_when_creating_the_index(fake: FakeS3Vectors) -> None:
    client = fake.client()
    client.create_vector_bucket(vectorBucketName=BUCKET)
    store = make_store(fake, client=client)
    assert store.dimension == 8
    assert fake.calls["create_index"] == 1
    # No CreateVectorBucket call: a role limited to one existing bucket still works.
    assert fake.calls["create_vector_bucket"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dimension": 16}, "dimension 8"),
        ({"distance_metric": "euclidean"}, "'cosine'"),
        ({"non_filterable_metadata_keys": ("notes",)}, "non-filterable"),
    ],
    ids=["dimension", "metric", "non-filterable-keys"],
)
def test_incompatible_existing_index_is_a_clear_error(
    fake: FakeS3Vectors, kwargs: dict[str, Any], message: str
) -> None:
    client = fake.client()
    make_store(fake, client=client)
    with pytest.raises(IndexMismatchError, match=message):
        make_store(fake, client=client, **kwargs)


def test_default_non_filterable_keys_adopt_the_existing_index_keys(fake: FakeS3Vectors) -> None:
    client = fake.client()
    make_store(fake, client=client, non_filterable_metadata_keys=("notes",))
    store = make_store(fake, client=client)
    assert store.non_filterable_metadata_keys == frozenset({"notes"})
    with pytest.raises(InvalidFilterError):
        store.query(np.ones(8), filter={"notes": "x"})


def test_dimension_none_reads_the_dimension_of_the_existing_index(fake: FakeS3Vectors) -> None:
    client = fake.client()
    make_store(fake, client=client, dimension=24)
    store = make_store(fake, client=client, dimension=None)
    assert store.dimension == 24


def test_dimension_none_on_a_missing_index_is_an_error_and_creates_nothing(
    fake: FakeS3Vectors,
) -> None:
    with pytest.raises(ConfigurationError, match="dimension"):
        make_store(fake, dimension=None)
    assert fake.calls["create_vector_bucket"] == 0
    assert fake.calls["create_index"] == 0


def test_create_false_on_a_missing_index_raises_not_found(fake: FakeS3Vectors) -> None:
    with pytest.raises(ResourceNotFoundError, match="create=False"):
        make_store(fake, create=False)
    assert fake.calls["create_index"] == 0


@pytest.mark.parametrize(
    ("bucket", "index"), [("Shop_Vectors", INDEX), (BUCKET, "x"), (BUCKET, "-products")]
)
def test_invalid_names_fail_before_any_call(fake: FakeS3Vectors, bucket: str, index: str) -> None:
    client = fake.client()
    with pytest.raises(InvalidInputError):
        S3VectorsStore(bucket, index, client=client, dimension=8)
    assert sum(fake.calls.values()) == 0


def test_a_deleted_index_surfaces_as_resource_not_found(fake: FakeS3Vectors) -> None:
    client = fake.client()
    store = make_store(fake, client=client)
    client.delete_index(vectorBucketName=BUCKET, indexName=INDEX)
    with pytest.raises(ResourceNotFoundError):
        store.query(np.ones(8))


# -- reads ----------------------------------------------------------------------------------------


def test_get_returns_records_in_the_order_asked_and_reports_missing(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    recs = records(250)
    store.put(recs)
    asked = ["k200", "nope", "k3", *[f"k{i}" for i in range(249, 100, -1)], "gone"]

    got = store.get(asked)

    assert fake.calls["get_vectors"] == 2  # 151 found-or-missing unique keys, 100 per call
    assert [r.key for r in got.records] == [k for k in asked if k not in ("nope", "gone")]
    assert got.missing == ("nope", "gone")
    first = got.records[0]
    np.testing.assert_array_equal(first.vector, recs[200].vector)
    assert first.vector.dtype == np.float32
    assert first.metadata == {"i": 200, "even": True}


def test_reads_of_an_index_this_store_created_send_no_request_until_it_writes(
    fake: FakeS3Vectors,
) -> None:
    store = make_store(fake)  # creates the index: it is empty

    assert store.get(["k1", "k2"]).missing == ("k1", "k2")
    assert fake.calls["get_vectors"] == 0
    with pytest.raises(InvalidInputError):  # bad input is still an error
        store.get([3])  # type: ignore[list-item]

    store.put(records(3))
    assert [r.key for r in store.get(["k1", "k2"]).records] == ["k1", "k2"]
    assert fake.calls["get_vectors"] == 1


def test_reads_of_an_index_created_by_someone_else_always_ask_the_service(
    fake: FakeS3Vectors,
) -> None:
    writer = make_store(fake)
    reader = make_store(fake)  # the index exists: this store did not create it
    writer.put(records(3))

    assert [r.key for r in reader.get(["k1", "k9"]).records] == ["k1"]
    assert fake.calls["get_vectors"] == 1


def test_a_failed_put_ends_the_known_empty_state(fake: FakeS3Vectors) -> None:
    store = make_store(fake, max_concurrency=1)
    other = make_store(fake)
    other.put(records(2))  # written by another handle: not seen by the creator's reads
    fake.fail_next("put_vectors", "InternalServerException", times=100)
    with pytest.raises(ServiceError):
        store.put(records(1, prefix="x"))

    assert [r.key for r in store.get(["k0", "k1"]).records] == ["k0", "k1"]


def test_list_follows_next_token_with_a_small_page(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    store.put(records(25))

    assert sorted(store.keys(page_size=4)) == sorted(f"k{i}" for i in range(25))
    assert fake.calls["list_vectors"] == 7
    tokens = [r.params.get("nextToken") for r in fake.operation_requests("list_vectors")]
    assert tokens[0] is None
    assert all(tokens[1:])


def test_records_can_be_listed_with_parallel_segments(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    recs = {r.key: r for r in records(40)}
    store.put(recs.values())

    listed = list(store.records(segments=4, page_size=3))

    assert sorted(r.key for r in listed) == sorted(recs)
    for r in listed:
        np.testing.assert_array_equal(r.vector, recs[r.key].vector)
        assert r.metadata == recs[r.key].metadata
    segments = {r.params["segmentIndex"] for r in fake.operation_requests("list_vectors")}
    assert segments == {0, 1, 2, 3}
    assert {r.params["segmentCount"] for r in fake.operation_requests("list_vectors")} == {4}


def test_listing_a_page_stops_early_at_about_one_mib(fake: FakeS3Vectors) -> None:
    store = make_store(fake, dimension=2048)
    store.put(records(60, 2048))
    assert len(list(store.records(page_size=1000))) == 60
    assert fake.calls["list_vectors"] >= 2  # 60 x 2048 floats is over 2 MiB of JSON


def test_empty_operations_make_no_calls(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    before = sum(fake.calls.values())
    store.put([])
    store.delete([])
    assert store.get([]).records == ()
    assert sum(fake.calls.values()) == before


def test_fake_request_bodies_are_botocore_json(fake: FakeS3Vectors) -> None:
    store = make_store(fake)
    store.put(records(2))
    req = put_requests(fake)[0]
    body = json.dumps(req.params).encode()
    # botocore serialises with json.dumps defaults, which is what the byte budget measures.
    assert len(body) == req.size
