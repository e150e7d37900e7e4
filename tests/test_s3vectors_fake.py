"""FakeS3Vectors behaves like the service: limits server-side, errors in botocore's wire format.

Users test their own code against this fake, so a request the real service would reject must be
rejected here too, with the same error code and HTTP status.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from crossmodal_search.testing import FakeS3Vectors

B, INDEX = "shop-vectors", "products"
IDX: dict[str, Any] = {"vectorBucketName": B, "indexName": INDEX}


@pytest.fixture
def fake() -> FakeS3Vectors:
    return FakeS3Vectors()


@pytest.fixture
def client(fake: FakeS3Vectors) -> Any:
    c: Any = fake.client()
    c.create_vector_bucket(vectorBucketName=B)
    c.create_index(
        **IDX,
        dataType="float32",
        dimension=4,
        distanceMetric="cosine",
        metadataConfiguration={"nonFilterableMetadataKeys": ["body"]},
    )
    return c


def vec(key: str, data: list[float] | None = None, **metadata: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key, "data": {"float32": data or [1.0, 0.0, 0.0, 0.0]}}
    if metadata:
        item["metadata"] = metadata
    return item


def error_of(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# -- wire format -----------------------------------------------------------------------------------


def test_errors_parse_into_modeled_botocore_exceptions(client: Any) -> None:
    with pytest.raises(client.exceptions.ConflictException):
        client.create_vector_bucket(vectorBucketName=B)
    with pytest.raises(client.exceptions.NotFoundException) as info:
        client.get_index(vectorBucketName=B, indexName="nope")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "nope" in info.value.response["Error"]["Message"]
    assert info.value.response["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("TooManyRequestsException", 429),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("RequestTimeoutException", 408),
        ("AccessDeniedException", 403),
        ("ServiceQuotaExceededException", 402),
        ("ValidationException", 400),
    ],
)
def test_injected_errors_carry_the_service_status(
    fake: FakeS3Vectors, client: Any, code: str, status: int
) -> None:
    fake.fail_next("QueryVectors", code)
    assert error_of(client.query_vectors, **IDX, topK=1, queryVector={"float32": [1.0] * 4}) == (
        code,
        status,
    )
    client.query_vectors(**IDX, topK=1, queryVector={"float32": [1.0] * 4})  # once only


def test_fail_next_after_and_times(fake: FakeS3Vectors, client: Any) -> None:
    fake.fail_next("get_index", "InternalServerException", times=2, after=1)
    client.get_index(**IDX)
    for _ in range(2):
        assert error_of(client.get_index, **IDX)[0] == "InternalServerException"
    client.get_index(**IDX)
    assert fake.calls["get_index"] == 4


def test_fail_next_rejects_unknown_codes(fake: FakeS3Vectors) -> None:
    with pytest.raises(ValueError, match="unknown"):
        fake.fail_next("put_vectors", "NoSuchThing")


# -- limits enforced server-side -------------------------------------------------------------------


def test_put_vectors_limits(client: Any) -> None:
    too_many = [vec(f"k{i}") for i in range(501)]
    assert error_of(client.put_vectors, **IDX, vectors=too_many)[0] == "ValidationException"
    cases = [
        [vec("a", [1.0, 2.0])],  # dimension
        [vec("a", [0.0, 0.0, 0.0, 0.0])],  # zero vector on cosine
        [vec("a", [float("nan"), 1.0, 1.0, 1.0])],  # NaN
        [vec("a"), vec("a")],  # duplicate key
        [vec("k" * 1025)],  # key length
        [vec("a", title="x" * 2100)],  # 2 KB filterable
        [vec("a", body="x" * 41000)],  # 40 KB total (non-filterable counts too)
        [{"key": "a", "data": {"float32": [1.0] * 4}, "metadata": {f"m{i}": i for i in range(51)}}],
        [vec("a", spec={"w": 1})],  # nested object
    ]
    for vectors in cases:
        assert error_of(client.put_vectors, **IDX, vectors=vectors) == ("ValidationException", 400)
    listed = client.list_vectors(**IDX)["vectors"]
    assert listed == []  # every rejected request wrote nothing


def test_non_filterable_metadata_may_exceed_2_kb(client: Any) -> None:
    client.put_vectors(**IDX, vectors=[vec("a", body="x" * 10000, title="short")])
    (item,) = client.get_vectors(**IDX, keys=["a"], returnMetadata=True)["vectors"]
    assert item["metadata"]["title"] == "short"


def test_request_payload_over_20_mib_is_rejected() -> None:
    fake = FakeS3Vectors(record_requests=False)
    c: Any = fake.client()
    c.create_vector_bucket(vectorBucketName=B)
    c.create_index(**IDX, dataType="float32", dimension=1024, distanceMetric="euclidean")
    blob = "x" * 40000
    # 500 vectors x (1024 short floats + 40 KB of metadata) is about 22.6 MB, over 20 MiB, while
    # each vector is within every per-vector limit.
    vectors = [vec(f"k{i}", [0.5] * 1024, body=blob) for i in range(500)]
    assert error_of(c.put_vectors, **IDX, vectors=vectors)[0] == "ValidationException"
    assert fake.vector_count(B, INDEX) == 0


def test_get_and_delete_limits(client: Any) -> None:
    assert error_of(client.get_vectors, **IDX, keys=[f"k{i}" for i in range(101)])[0] == (
        "ValidationException"
    )
    assert error_of(client.delete_vectors, **IDX, keys=[f"k{i}" for i in range(501)])[0] == (
        "ValidationException"
    )


def test_query_limits_and_filter_validation(client: Any) -> None:
    q = {"float32": [1.0, 0.0, 0.0, 0.0]}
    assert (
        error_of(client.query_vectors, **IDX, topK=101, queryVector=q)[0] == "ValidationException"
    )
    bad = {"float32": [1.0, 0.0]}
    assert (
        error_of(client.query_vectors, **IDX, topK=1, queryVector=bad)[0] == "ValidationException"
    )
    filters: list[dict[str, Any]] = [{"a": {"$regex": "x"}}, {"body": "x"}, {"a": {"$in": []}}]
    for flt in filters:
        assert error_of(client.query_vectors, **IDX, topK=1, queryVector=q, filter=flt)[0] == (
            "ValidationException"
        )


def test_index_configuration_limits(client: Any) -> None:
    base = {"vectorBucketName": B, "dataType": "float32", "distanceMetric": "cosine"}
    assert error_of(client.create_index, **base, indexName="big", dimension=4097)[0] == (
        "ValidationException"
    )
    assert client.create_index(**base, indexName="max", dimension=4096)["indexArn"].endswith(
        "/index/max"
    )
    keys = [f"k{i}" for i in range(11)]
    assert error_of(
        client.create_index,
        **base,
        indexName="keys",
        dimension=4,
        metadataConfiguration={"nonFilterableMetadataKeys": keys},
    )[0] == ("ValidationException")
    assert error_of(client.create_index, **base, indexName=INDEX, dimension=4)[0] == (
        "ConflictException"
    )
    assert error_of(client.create_vector_bucket, vectorBucketName="Bad_Name")[0] == (
        "ValidationException"
    )


def test_bucket_with_indexes_cannot_be_deleted(client: Any) -> None:
    assert error_of(client.delete_vector_bucket, vectorBucketName=B)[0] == "ConflictException"
    client.delete_index(**IDX)
    client.delete_vector_bucket(vectorBucketName=B)
    assert error_of(client.get_vector_bucket, vectorBucketName=B)[0] == "NotFoundException"


def test_index_can_be_addressed_by_arn(client: Any) -> None:
    arn = client.get_index(**IDX)["index"]["indexArn"]
    client.put_vectors(indexArn=arn, vectors=[vec("a")])
    assert [v["key"] for v in client.list_vectors(indexArn=arn)["vectors"]] == ["a"]


# -- semantics -------------------------------------------------------------------------------------


def test_query_distances_and_filter_semantics(client: Any) -> None:
    client.put_vectors(
        **IDX,
        vectors=[
            vec("same", [2.0, 0.0, 0.0, 0.0], tags=["red", "xl"]),
            vec("orthogonal", [0.0, 1.0, 0.0, 0.0], tags=["blue"]),
            vec("opposite", [-1.0, 0.0, 0.0, 0.0], tags="red"),
        ],
    )
    q = {"float32": [1.0, 0.0, 0.0, 0.0]}
    out = client.query_vectors(**IDX, topK=3, queryVector=q, returnDistance=True)
    assert out["distanceMetric"] == "cosine"
    assert [(v["key"], round(v["distance"], 6)) for v in out["vectors"]] == [
        ("same", 0.0),
        ("orthogonal", 1.0),
        ("opposite", 2.0),
    ]
    assert "metadata" not in out["vectors"][0]
    red = client.query_vectors(
        **IDX, topK=3, queryVector=q, filter={"tags": "red"}, returnMetadata=True
    )
    assert [v["key"] for v in red["vectors"]] == ["same", "opposite"]
    assert red["vectors"][0]["metadata"] == {"tags": ["red", "xl"]}


def test_get_vectors_drops_unknown_keys_and_answers_in_index_order(client: Any) -> None:
    client.put_vectors(**IDX, vectors=[vec("a"), vec("b"), vec("c")])
    out = client.get_vectors(**IDX, keys=["c", "zzz", "a"], returnData=True)["vectors"]
    assert [v["key"] for v in out] == ["a", "c"]
    assert out[0]["data"]["float32"] == [1.0, 0.0, 0.0, 0.0]


def test_list_vectors_paginates_and_segments_partition_the_keys(client: Any) -> None:
    client.put_vectors(**IDX, vectors=[vec(f"k{i:02d}") for i in range(30)])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"maxResults": 7}
        if token:
            kwargs["nextToken"] = token
        page = client.list_vectors(**IDX, **kwargs)
        seen += [v["key"] for v in page["vectors"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 5
    assert sorted(seen) == [f"k{i:02d}" for i in range(30)]

    segments = [
        {
            v["key"]
            for v in client.list_vectors(**IDX, segmentCount=3, segmentIndex=s, maxResults=1000)[
                "vectors"
            ]
        }
        for s in range(3)
    ]
    assert set().union(*segments) == set(seen)
    assert sum(len(s) for s in segments) == 30  # disjoint
    assert error_of(client.list_vectors, **IDX, segmentCount=3)[0] == "ValidationException"


def test_list_paginator_works(client: Any) -> None:
    client.put_vectors(**IDX, vectors=[vec(f"k{i}") for i in range(12)])
    pages = client.get_paginator("list_vectors").paginate(**IDX, PaginationConfig={"PageSize": 5})
    assert sum(len(p["vectors"]) for p in pages) == 12


# -- options: latency, throttle, counters, threads -------------------------------------------------


def test_calls_are_counted_per_operation(fake: FakeS3Vectors, client: Any) -> None:
    client.list_vectors(**IDX)
    client.list_vectors(**IDX)
    assert fake.calls["list_vectors"] == 2
    assert fake.calls["create_index"] == 1
    assert [r.operation for r in fake.requests[-2:]] == ["list_vectors", "list_vectors"]


def test_latency_is_applied_per_call_and_overlaps_across_threads() -> None:
    fake = FakeS3Vectors(latency=0.3)
    c = fake.client()
    start = time.perf_counter()
    threads = [threading.Thread(target=c.list_vector_buckets) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - start >= 0.3
    assert fake.calls["list_vector_buckets"] == 4
    assert fake.max_in_flight >= 2  # the sleeps overlapped: latency is not under the lock


def test_token_bucket_throttle_answers_429() -> None:
    now = [0.0]
    fake = FakeS3Vectors(throttle=5.0, burst=2.0, clock=lambda: now[0])
    c = fake.client()
    codes = []
    for _ in range(4):
        try:
            c.list_vector_buckets()
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
    assert codes == ["ok", "ok", "TooManyRequestsException", "TooManyRequestsException"]
    now[0] += 0.2  # one token refills at 5/s
    c.list_vector_buckets()
    assert error_of(c.list_vector_buckets) == ("TooManyRequestsException", 429)


def test_concurrent_writers_lose_nothing(client: Any, fake: FakeS3Vectors) -> None:
    def write(t: int) -> None:
        for j in range(10):
            client.put_vectors(**IDX, vectors=[vec(f"t{t}-{j}-{i}") for i in range(20)])

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.vector_count(B, INDEX) == 4 * 10 * 20


def test_attach_to_a_user_built_client() -> None:
    c = boto3.client(
        "s3vectors", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    fake = FakeS3Vectors()
    assert fake.attach(c) is c
    fake.attach(c)  # attaching twice registers once
    c.create_vector_bucket(vectorBucketName=B)
    assert fake.calls["create_vector_bucket"] == 1
    assert np.isclose(len(c.list_vector_buckets()["vectorBuckets"]), 1)


def test_tags_on_buckets_and_indexes(fake: FakeS3Vectors) -> None:
    c: Any = fake.client()
    bucket_arn = c.create_vector_bucket(vectorBucketName="tagged", tags={"team": "search"})[
        "vectorBucketArn"
    ]
    index_arn = c.create_index(
        vectorBucketName="tagged",
        indexName="idx",
        dataType="float32",
        dimension=4,
        distanceMetric="cosine",
        tags={"run": "r1"},
    )["indexArn"]

    assert c.list_tags_for_resource(resourceArn=bucket_arn)["tags"] == {"team": "search"}
    c.tag_resource(resourceArn=index_arn, tags={"owner": "me", "run": "r2"})
    assert c.list_tags_for_resource(resourceArn=index_arn)["tags"] == {"run": "r2", "owner": "me"}
    c.untag_resource(resourceArn=index_arn, tagKeys=["run", "absent"])
    assert c.list_tags_for_resource(resourceArn=index_arn)["tags"] == {"owner": "me"}

    with pytest.raises(ClientError) as info:
        c.list_tags_for_resource(resourceArn=bucket_arn.replace("tagged", "nope"))
    assert info.value.response["Error"]["Code"] == "NotFoundException"
    with pytest.raises(ClientError) as info:
        c.tag_resource(resourceArn=bucket_arn, tags={f"k{i}": "v" for i in range(51)})
    assert info.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1.0, float("-inf")]])
def test_non_finite_metadata_is_rejected(client: Any, value: Any) -> None:
    # botocore writes NaN/Infinity as bare tokens, which are not JSON: the service cannot read them.
    with pytest.raises(ClientError) as info:
        item = {"key": "a", "data": {"float32": [1, 0, 0, 0]}, "metadata": {"x": value}}
        client.put_vectors(**IDX, vectors=[item])
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert client.get_vectors(**IDX, keys=["a"])["vectors"] == []
