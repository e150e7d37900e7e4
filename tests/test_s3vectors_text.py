"""S3VectorsStore's index modes, text fields and full-text/hybrid queries: what only S3 Vectors has
(CLASSIC indexes, the upgrade path, BUILDING fields, pages), through FakeS3Vectors and Stubber.

What both stores share (rankings, filters, limits) is tests/test_text_contract.py.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest
from botocore.stub import Stubber

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.errors import (
    AccessDeniedError,
    ConfigurationError,
    DimensionMismatchError,
    IndexMismatchError,
    InvalidFilterError,
    InvalidInputError,
    ServiceError,
    ServiceValidationError,
)
from crossmodal_search.stores import S3VectorsStore, TextField, TextMatch, VectorRecord
from crossmodal_search.testing import FakeS3Vectors

BUCKET, INDEX = "shop-vectors", "products"
DIM = 4
OLD = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()  # buckets then made CLASSIC indexes
WRITES = ("create_index", "update_index_mode", "update_metadata_configuration", "put_vectors")


@pytest.fixture
def fake() -> FakeS3Vectors:
    return FakeS3Vectors()


@pytest.fixture
def old_fake() -> FakeS3Vectors:
    """A fake whose buckets were created before 30 Sep 2026: their indexes start CLASSIC."""
    return FakeS3Vectors(wall_clock=lambda: OLD)


def open_store(fake: FakeS3Vectors, index: str = INDEX, **kw: Any) -> S3VectorsStore:
    kw.setdefault("dimension", DIM)
    kw.setdefault("retry_policy", RetryPolicy(max_attempts=3, sleep=lambda _: None))
    return S3VectorsStore(BUCKET, index, client=kw.pop("client", None) or fake.client(), **kw)


def catalog() -> list[VectorRecord]:
    rows = [
        ("a", [1.0, 0.0, 0.0, 0.0], "red summer dress", "acme"),
        ("b", [0.0, 1.0, 0.0, 0.0], "blue denim jacket", "globex"),
        ("c", [0.0, 0.0, 1.0, 0.0], "red wool scarf", "acme"),
        ("d", [0.0, 0.0, 0.0, 1.0], "green rain jacket", "initech"),
    ]
    return [
        VectorRecord.create(k, np.asarray(v), {"title": t, "brand": b, "sku": f"SKU-{k}"})
        for k, v, t, b in rows
    ]


def writes(fake: FakeS3Vectors) -> int:
    return sum(fake.calls[op] for op in WRITES)


def sent(fake: FakeS3Vectors, operation: str) -> list[dict[str, Any]]:
    return [dict(r.params) for r in fake.operation_requests(operation)]


# -- creating and opening -------------------------------------------------------------------------


def test_a_new_index_in_a_new_bucket_gets_its_text_fields_at_creation(
    fake: FakeS3Vectors,
) -> None:
    store = open_store(fake, text_fields=[TextField("title"), TextField("brand", "en")])

    assert store.index_mode == "ENHANCED"
    assert store.text_fields == (TextField("title"), TextField("brand", "en"))
    (create,) = sent(fake, "create_index")
    assert create["metadataConfiguration"]["textSearchConfigurations"] == [
        {"metadataKey": "title"},
        {"metadataKey": "brand", "language": "en"},
    ]
    assert fake.calls["update_index_mode"] == fake.calls["update_metadata_configuration"] == 0


def test_an_index_in_an_old_bucket_is_created_then_moved_to_enhanced_then_given_its_fields(
    old_fake: FakeS3Vectors, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="crossmodal_search"):
        store = open_store(old_fake, text_fields=[TextField("title")])

    order = [r.operation for r in old_fake.requests if r.operation != "get_index"]
    assert order == [
        "get_vector_bucket",  # not found: the bucket is created
        "create_vector_bucket",
        "get_vector_bucket",  # defaultIndexMode CLASSIC
        "create_index",
        "update_index_mode",
        "update_metadata_configuration",
    ]
    assert "textSearchConfigurations" not in sent(old_fake, "create_index")[0].get(
        "metadataConfiguration", {}
    )
    assert sent(old_fake, "update_index_mode")[0]["indexMode"] == "ENHANCED"
    assert store.index_mode == "ENHANCED"
    assert store.text_fields == (TextField("title"),)
    assert "moving it to ENHANCED" in caplog.text
    # Without text fields an index in an old bucket stays as the bucket makes it.
    assert open_store(old_fake, "plain").index_mode == "CLASSIC"


def test_opening_an_index_adds_missing_text_fields_and_keeps_the_others(
    fake: FakeS3Vectors, caplog: pytest.LogCaptureFixture
) -> None:
    open_store(fake, text_fields=[TextField("title")]).put(catalog())
    with caplog.at_level(logging.INFO, logger="crossmodal_search"):
        store = open_store(fake, text_fields=[TextField("brand")])

    assert [f.key for f in store.text_fields] == ["title", "brand"]
    (add,) = sent(fake, "update_metadata_configuration")
    assert add["add"] == {"textSearchConfigurations": [{"metadataKey": "brand"}]}
    assert "adding text search configurations for ['brand']" in caplog.text
    assert [m.key for m in store.query_text({"brand": "acme"})] == ["a", "c"]  # backfilled
    open_store(fake, text_fields=[TextField("title")])
    assert fake.calls["update_metadata_configuration"] == 1  # nothing missing: no call


def test_a_text_field_with_another_language_is_a_mismatch_before_any_write(
    fake: FakeS3Vectors,
) -> None:
    open_store(fake, text_fields=[TextField("title", "en")])
    before = writes(fake)
    with pytest.raises(IndexMismatchError, match=r"remove_text_fields\(\['title'\]\) then add"):
        open_store(fake, text_fields=[TextField("title", "fr"), TextField("brand")])
    assert writes(fake) == before


def test_text_fields_on_an_existing_classic_index_name_the_upgrade_and_change_nothing(
    old_fake: FakeS3Vectors,
) -> None:
    open_store(old_fake)
    before = writes(old_fake)
    with pytest.raises(IndexMismatchError, match=r"update_index_mode\('ENHANCED'\)"):
        open_store(old_fake, text_fields=[TextField("title")])
    assert writes(old_fake) == before


def test_bad_text_fields_fail_before_any_call(fake: FakeS3Vectors) -> None:
    for bad in (
        [TextField("title"), TextField("title", "en")],
        [TextField(f"k{i}") for i in range(11)],
        [TextField("title", "xx")],  # type: ignore[arg-type]
        [TextField("k" * 64)],
    ):
        with pytest.raises(InvalidInputError):
            open_store(fake, text_fields=bad)
    assert sum(fake.calls.values()) == 0


def test_status_is_never_sent(fake: FakeS3Vectors) -> None:
    store = open_store(fake, text_fields=[TextField("title", status="BUILDING")])
    store.add_text_fields([TextField("brand", status="ACTIVE")])
    bodies = sent(fake, "create_index") + sent(fake, "update_metadata_configuration")
    assert bodies and "status" not in str(bodies)


# -- changing modes and fields --------------------------------------------------------------------


def test_a_classic_index_is_upgraded_in_place_and_keeps_its_vectors(
    old_fake: FakeS3Vectors,
) -> None:
    store = open_store(old_fake)
    store.put(catalog())
    with pytest.raises(ConfigurationError, match="add_text_fields"):
        store.query_text({"title": "red"})
    with pytest.raises(ConfigurationError, match=r"update_index_mode\('ENHANCED'\)"):
        store.add_text_fields([TextField("title")])
    assert old_fake.calls["query_vectors"] == old_fake.calls["update_metadata_configuration"] == 0

    store.update_index_mode("ENHANCED")
    store.add_text_fields([TextField("title")])

    assert store.index_mode == "ENHANCED"
    assert [m.key for m in store.query_text({"title": "red"})] == ["a", "c"]
    assert old_fake.vector_count(BUCKET, INDEX) == 4


def test_going_back_to_classic_is_refused_where_the_service_refuses_it(
    fake: FakeS3Vectors, old_fake: FakeS3Vectors
) -> None:
    store = open_store(fake)
    with pytest.raises(ServiceValidationError, match="before 30 Sep 2026") as info:
        store.update_index_mode("CLASSIC")
    assert info.value.code == "ValidationException"
    assert store.index_mode == "ENHANCED"
    with pytest.raises(InvalidInputError):
        store.update_index_mode("FAST")  # type: ignore[arg-type]
    assert fake.calls["update_index_mode"] == 1

    old = open_store(old_fake)
    old.update_index_mode("ENHANCED")
    old.update_index_mode("CLASSIC")  # an old bucket's index may go back ...
    assert old.index_mode == "CLASSIC"
    old.update_index_mode("ENHANCED")
    old.add_text_fields([TextField("title")])
    with pytest.raises(ServiceValidationError):  # ... but not with text fields (assumed)
        old.update_index_mode("CLASSIC")


def test_add_and_remove_text_fields_check_everything_before_the_call(fake: FakeS3Vectors) -> None:
    store = open_store(fake, text_fields=[TextField("title")])
    for bad in (
        [TextField("title", "en")],  # already searchable
        [TextField(f"k{i}") for i in range(10)],  # 11 in all
        ["title"],  # not a TextField
    ):
        with pytest.raises(InvalidInputError):
            store.add_text_fields(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="'brand' is not full-text searchable"):
        store.remove_text_fields(["brand"])
    with pytest.raises(InvalidInputError, match="not a single string"):
        store.remove_text_fields("title")
    store.add_text_fields([])
    store.remove_text_fields([])
    assert fake.calls["update_metadata_configuration"] == 0

    store.remove_text_fields(["title", "title"])
    (delete,) = sent(fake, "update_metadata_configuration")
    assert delete["delete"] == {"textSearchConfigurations": [{"metadataKey": "title"}]}
    assert store.text_fields == ()
    with pytest.raises(InvalidInputError, match="not full-text searchable"):
        store.query_text({"title": "red"})


def test_a_field_building_is_reported_refused_and_picked_up_once_active(
    fake: FakeS3Vectors,
) -> None:
    store = open_store(fake, text_fields=[TextField("title")])
    store.put(catalog())
    fake.hold_text_builds()
    store.add_text_fields([TextField("brand")])
    assert store.text_fields == (TextField("title"), TextField("brand", status="BUILDING"))

    reads = fake.calls["get_index"]
    with pytest.raises(InvalidInputError, match="BUILDING"):
        store.query_text({"brand": "acme"})
    assert fake.calls["query_vectors"] == 0
    assert fake.calls["get_index"] == reads + 1  # looked again before refusing
    assert [m.key for m in store.query_text({"title": "jacket"})] == ["b", "d"]
    assert fake.calls["get_index"] == reads + 1  # an ACTIVE field needs no look

    fake.finish_text_builds()
    assert [m.key for m in store.query_text({"brand": "acme"})] == ["a", "c"]
    assert store.text_fields[1].status == "ACTIVE"


def test_refresh_sees_changes_made_elsewhere(fake: FakeS3Vectors) -> None:
    store = open_store(fake)
    other = open_store(fake)
    other.add_text_fields([TextField("title")])
    assert not store.text_fields
    store.refresh()
    assert store.text_fields == (TextField("title"),)
    store.put(catalog())
    other.remove_text_fields(["title"])
    with pytest.raises(ServiceValidationError):  # the service says no; nothing retried
        store.query_text({"title": "red"})
    assert fake.calls["query_vectors"] == 1


# -- queries --------------------------------------------------------------------------------------


@pytest.fixture
def store(fake: FakeS3Vectors) -> S3VectorsStore:
    s = open_store(fake, text_fields=[TextField("title"), TextField("brand")])
    s.put(catalog())
    return s


def test_query_text_sends_one_request_and_parses_the_scores(
    store: S3VectorsStore, fake: FakeS3Vectors
) -> None:
    text_only = store.query_text({"title": "red jacket"}, top_k=3, filter={"brand": "acme"})
    hybrid = store.query_text(
        {"title": "jacket", "brand": "globex"}, vector=[0.0, 0.0, 0.0, 1.0], top_k=4
    )

    first, second = sent(fake, "query_vectors")
    assert first == {
        "vectorBucketName": BUCKET,
        "indexName": INDEX,
        "topK": 3,
        "returnMetadata": True,
        "queryTexts": [{"metadataKey": "title", "text": "red jacket"}],
        "returnScores": True,
        "filter": {"brand": "acme"},
    }
    assert second["queryVector"] == {"float32": [0.0, 0.0, 0.0, 1.0]}
    assert second["returnDistance"] is second["returnScores"] is True
    assert [m.key for m in text_only] == ["a", "c"]
    assert all(m.fused is None and m.distance is None for m in text_only)
    assert text_only[0].score == pytest.approx(sum(text_only[0].bm25.values()))
    assert text_only[0].metadata["title"] == "red summer dress"
    # b: 1st for both texts, 3rd by vector; d: 2nd for "jacket", 1st by vector.
    b, d = hybrid[:2]
    assert isinstance(b, TextMatch)
    assert (b.key, d.key) == ("b", "d")
    assert b.score == b.fused == pytest.approx(2 / 61 + 1 / 63)
    assert set(b.bm25) == {"title", "brand"} and b.distance == pytest.approx(1.0)
    assert set(d.bm25) == {"title"} and d.distance == 0.0


def test_query_text_checks_everything_before_the_call(
    store: S3VectorsStore, fake: FakeS3Vectors
) -> None:
    bad: list[tuple[dict[str, Any], dict[str, Any], type[Exception]]] = [
        ({}, {}, InvalidInputError),
        ({f"k{i}": "x" for i in range(11)}, {}, InvalidInputError),
        ({"title": "x" * 1025}, {}, InvalidInputError),
        ({"title": "  "}, {}, InvalidInputError),
        ({"sku": "SKU-a"}, {}, InvalidInputError),
        ({"title": "red"}, {"top_k": 0}, InvalidInputError),
        ({"title": "red"}, {"top_k": 101}, InvalidInputError),
        ({"title": "red"}, {"vector": [1.0, 0.0]}, DimensionMismatchError),
        ({"title": "red"}, {"vector": [np.nan, 0, 0, 1]}, InvalidInputError),
        ({"title": "red"}, {"vector": [0.0] * 4}, InvalidInputError),
        ({"title": "red"}, {"filter": {"$or": [{"n": i} for i in range(101)]}}, InvalidFilterError),
        ({"title": "red"}, {"filter": {"description": "x"}}, InvalidFilterError),
    ]
    for texts, kw, error in bad:
        with pytest.raises(error):
            store.query_text(texts, **kw)
    assert fake.calls["query_vectors"] == 0


def test_query_text_never_logs_the_words(
    store: S3VectorsStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Ours only: botocore's own DEBUG log prints whole request bodies.
    with caplog.at_level(logging.DEBUG, logger="crossmodal_search"):
        store.query_text({"title": "secretword"}, vector=[1.0, 0.0, 0.0, 0.0])
        with pytest.raises(InvalidInputError):
            store.query_text({"title": "secretword " * 200})
    assert caplog.records
    assert "secretword" not in caplog.text


def test_query_mode_rules_are_checked_before_the_call(
    fake: FakeS3Vectors, old_fake: FakeS3Vectors
) -> None:
    enhanced = open_store(fake)
    enhanced.put(catalog())
    q = [1.0, 0.0, 0.0, 0.0]
    starts = {"sku": {"$startsWith": "SKU-"}}
    with pytest.raises(InvalidInputError, match="CLASSIC"):
        enhanced.query(q, query_mode="CLASSIC")
    with pytest.raises(InvalidInputError):
        enhanced.query_many([q], query_mode="FAST")  # type: ignore[arg-type]
    with pytest.raises(InvalidFilterError, match="100"):
        enhanced.query(q, filter={"$or": [{"sku": f"s{i}"} for i in range(101)]})
    assert fake.calls["query_vectors"] == 0
    assert len(enhanced.query(q, filter=starts)) == 4

    classic = open_store(old_fake)
    classic.put(catalog())
    with pytest.raises(InvalidFilterError, match=r"\$startsWith needs an ENHANCED index"):
        classic.query(q, filter=starts)
    with pytest.raises(InvalidFilterError):
        classic.query_many([q, q], filter=starts)
    assert old_fake.calls["query_vectors"] == 0
    assert classic.query(q, filter=starts, query_mode="ENHANCED")[0].key == "a"
    assert sent(old_fake, "query_vectors")[-1]["queryMode"] == "ENHANCED"
    many = {"$or": [{"sku": f"s{i}"} for i in range(100)] + [{"sku": "SKU-b"}]}
    assert [m.key for m in classic.query(q, filter=many)] == ["b"]  # no cap on CLASSIC
    assert [[m.key for m in r] for r in classic.query_many([q], query_mode="ENHANCED")] == [
        ["a", "b", "c", "d"]
    ]


def test_results_split_into_pages_are_joined(store: S3VectorsStore, fake: FakeS3Vectors) -> None:
    whole_text = store.query_text({"title": "red jacket dress"}, top_k=10)
    whole_hybrid = store.query_text({"title": "jacket"}, vector=[1.0, 1.0, 0.0, 0.0], top_k=4)
    whole_vector = store.query([1.0, 1.0, 0.0, 0.0], top_k=4)
    fake.query_page_size = 1
    before = fake.calls["query_vectors"]

    assert store.query_text({"title": "red jacket dress"}, top_k=10) == whole_text
    assert store.query_text({"title": "jacket"}, vector=[1.0, 1.0, 0.0, 0.0], top_k=4) == (
        whole_hybrid
    )
    assert store.query([1.0, 1.0, 0.0, 0.0], top_k=4) == whole_vector
    assert fake.calls["query_vectors"] - before == len(whole_text) + 4 + 4
    tokens = [r.params.get("nextToken") for r in fake.operation_requests("query_vectors")]
    assert sum(t is not None for t in tokens) == len(whole_text) - 1 + 3 + 3


# -- errors from the service ----------------------------------------------------------------------


def test_service_errors_are_mapped_at_the_boundary(
    store: S3VectorsStore, fake: FakeS3Vectors
) -> None:
    fake.fail_next("QueryVectors", "AccessDeniedException", message="needs s3vectors:GetVectors")
    with pytest.raises(AccessDeniedError, match="GetVectors") as denied:
        store.query_text({"title": "red"})
    assert denied.value.code == "AccessDeniedException"
    fake.fail_next("QueryVectors", "TooManyRequestsException")
    assert [m.key for m in store.query_text({"title": "scarf"})] == ["c"]  # retried once
    fake.fail_next("UpdateMetadataConfiguration", "ConflictException")
    with pytest.raises(ServiceError) as conflict:
        store.add_text_fields([TextField("sku")])
    assert conflict.value.code == "ConflictException"
    assert [f.key for f in store.text_fields] == ["title", "brand"]
    fake.fail_next("UpdateIndexMode", "ValidationException")
    with pytest.raises(ServiceValidationError):
        store.update_index_mode("ENHANCED")


# -- the documented wire, independently of the fake -----------------------------------------------


def _stubbed() -> tuple[S3VectorsStore, Stubber]:
    client = FakeS3Vectors().client()
    stubber = Stubber(client)
    index = {
        "vectorBucketName": BUCKET,
        "indexName": INDEX,
        "indexArn": f"arn:aws:s3vectors:us-east-1:123456789012:bucket/{BUCKET}/index/{INDEX}",
        "creationTime": datetime(2026, 11, 1, tzinfo=timezone.utc),
        "dataType": "float32",
        "dimension": DIM,
        "distanceMetric": "cosine",
        "indexMode": "ENHANCED",
        "metadataConfiguration": {
            "nonFilterableMetadataKeys": ["description"],
            "textSearchConfigurations": [
                {"metadataKey": "title", "language": "en", "status": "ACTIVE"},
                {"metadataKey": "body", "status": "BUILDING"},
            ],
        },
    }
    stubber.add_response(
        "get_index", {"index": index}, {"vectorBucketName": BUCKET, "indexName": INDEX}
    )
    stubber.activate()
    store = S3VectorsStore(
        BUCKET, INDEX, client=client, non_filterable_metadata_keys=["description"]
    )
    return store, stubber


def test_the_documented_response_shapes_parse_and_our_requests_fit_the_model() -> None:
    store, stubber = _stubbed()
    assert store.index_mode == "ENHANCED"
    assert list(store.text_fields) == [
        TextField("title", "en"),
        TextField("body", status="BUILDING"),
    ]
    request = {
        "vectorBucketName": BUCKET,
        "indexName": INDEX,
        "topK": 3,
        "queryVector": {"float32": [1.0, 0.0, 0.0, 0.0]},
        "queryTexts": [{"metadataKey": "title", "text": "WH-1000XM5"}],
        "returnMetadata": True,
        "returnDistance": True,
        "returnScores": True,
    }
    stubber.add_response(
        "query_vectors",
        {
            "vectors": [
                {
                    "key": "both",
                    "distance": 0.25,
                    "scores": {
                        "fused": 0.0325,
                        "bm25Scores": [{"metadataKey": "title", "score": 3.5}],
                        "vectorDistance": 0.25,
                    },
                    "metadata": {"title": "Sony WH-1000XM5"},
                }
            ],
            "distanceMetric": "cosine",
            "nextToken": "page-2",
        },
        request,
    )
    stubber.add_response(
        "query_vectors",
        {
            "vectors": [
                {"key": "words", "scores": {"fused": 0.0161, "bm25Scores": []}},
                {"key": "near", "scores": {"fused": 0.0159, "vectorDistance": 0.5}},
            ],
            "distanceMetric": "cosine",
        },
        {**request, "nextToken": "page-2"},
    )
    matches = store.query_text({"title": "WH-1000XM5"}, vector=[1.0, 0.0, 0.0, 0.0], top_k=3)
    stubber.assert_no_pending_responses()
    assert matches == [
        TextMatch("both", 0.0325, {"title": 3.5}, 0.0325, 0.25, {"title": "Sony WH-1000XM5"}),
        TextMatch("words", 0.0161, {}, 0.0161, None, {}),
        TextMatch("near", 0.0159, {}, 0.0159, 0.5, {}),
    ]

    stubber.add_response(
        "update_metadata_configuration",
        {"indexArn": "arn:aws:s3vectors:us-east-1:123456789012:bucket/b/index/i"},
        {
            "vectorBucketName": BUCKET,
            "indexName": INDEX,
            "delete": {"textSearchConfigurations": [{"metadataKey": "body"}]},
        },
    )
    store.remove_text_fields(["body"])
    stubber.assert_no_pending_responses()
    assert store.text_fields == (TextField("title", "en"),)


def test_wait_for_text_fields_returns_once_the_backfill_is_done(fake: FakeS3Vectors) -> None:
    store = open_store(fake)
    store.put(catalog())
    fake.hold_text_builds()
    store.add_text_fields([TextField("title")])
    assert store.wait_for_text_fields(timeout=0.05, poll_interval=0.01) is False
    assert store.text_fields[0].status == "BUILDING"
    timer = threading.Timer(0.05, fake.finish_text_builds)
    timer.start()
    try:
        assert store.wait_for_text_fields(timeout=10, poll_interval=0.01) is True
    finally:
        timer.cancel()
    assert store.text_fields == (TextField("title"),)
    assert [m.key for m in store.query_text({"title": "scarf"})] == ["c"]
