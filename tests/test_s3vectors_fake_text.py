"""FakeS3Vectors' index modes, text search configurations and full-text/hybrid ``QueryVectors``,
at the wire (a real boto3 client): what a user testing hybrid code offline relies on.

Rankings are checked against an independent BM25 and RRF in tests/test_text_contract.py; here
the rules: which requests are refused with which code, which response fields appear when.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from crossmodal_search.testing import FakeS3Vectors

B, INDEX = "shop-vectors", "products"
IDX: dict[str, Any] = {"vectorBucketName": B, "indexName": INDEX}
BASE: dict[str, Any] = {"dataType": "float32", "dimension": 4, "distanceMetric": "cosine"}
BEFORE = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()  # a bucket of the CLASSIC era
AFTER = datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp()
E1, E2, E3 = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]


class Clock:
    """A wall clock tests move between bucket creations."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(AFTER)


@pytest.fixture
def fake(clock: Clock) -> FakeS3Vectors:
    return FakeS3Vectors(wall_clock=clock)


def make_client(fake: FakeS3Vectors, **index: Any) -> Any:
    c: Any = fake.client()
    c.create_vector_bucket(vectorBucketName=B)
    c.create_index(**IDX, **BASE, **index)
    return c


@pytest.fixture
def client(fake: FakeS3Vectors) -> Any:
    """An ENHANCED index whose ``title`` and ``brand`` are searchable, three records."""
    c = make_client(
        fake,
        metadataConfiguration={
            "nonFilterableMetadataKeys": ["body"],
            "textSearchConfigurations": [{"metadataKey": "title"}, {"metadataKey": "brand"}],
        },
    )
    c.put_vectors(
        **IDX,
        vectors=[
            vec("a", E1, title="red summer dress", brand="acme", body="cotton"),
            vec("b", E2, title="blue denim jacket", brand="globex"),
            vec("c", E3, title="red wool scarf", brand="acme"),
        ],
    )
    return c


def vec(key: str, data: list[float], **metadata: Any) -> dict[str, Any]:
    return {"key": key, "data": {"float32": data}, "metadata": metadata}


def error_of(fn: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def texts(**by_key: str) -> list[dict[str, str]]:
    return [{"metadataKey": k, "text": t} for k, t in by_key.items()]


def keys(response: dict[str, Any]) -> list[str]:
    return [v["key"] for v in response["vectors"]]


# -- modes ----------------------------------------------------------------------------------------


def test_a_bucket_makes_indexes_in_the_mode_of_its_creation_date(
    fake: FakeS3Vectors, clock: Clock
) -> None:
    c: Any = fake.client()
    clock.now = BEFORE
    c.create_vector_bucket(vectorBucketName="old-bucket")
    clock.now = AFTER
    c.create_vector_bucket(vectorBucketName="new-bucket")
    for bucket, mode in (("old-bucket", "CLASSIC"), ("new-bucket", "ENHANCED")):
        assert c.get_vector_bucket(vectorBucketName=bucket)["vectorBucket"]["defaultIndexMode"] == (
            mode
        )
        c.create_index(vectorBucketName=bucket, indexName="idx", **BASE)
        assert c.get_index(vectorBucketName=bucket, indexName="idx")["index"]["indexMode"] == mode


def test_the_default_mode_of_an_old_bucket_can_change_and_applies_to_new_indexes_only(
    fake: FakeS3Vectors, clock: Clock
) -> None:
    clock.now = BEFORE
    c = make_client(fake)
    c.put_vector_bucket_default_index_mode(vectorBucketName=B, defaultIndexMode="ENHANCED")
    c.create_index(vectorBucketName=B, indexName="later", **BASE)
    assert c.get_index(vectorBucketName=B, indexName="later")["index"]["indexMode"] == "ENHANCED"
    assert c.get_index(**IDX)["index"]["indexMode"] == "CLASSIC"
    c.put_vector_bucket_default_index_mode(vectorBucketName=B, defaultIndexMode="CLASSIC")
    c.create_index(vectorBucketName=B, indexName="again", **BASE)
    assert c.get_index(vectorBucketName=B, indexName="again")["index"]["indexMode"] == "CLASSIC"


def test_a_new_bucket_cannot_default_to_classic(fake: FakeS3Vectors) -> None:
    c = make_client(fake)
    code, message = error_of(
        c.put_vector_bucket_default_index_mode, vectorBucketName=B, defaultIndexMode="CLASSIC"
    )
    assert code == "ValidationException"
    assert "September 30, 2026" in message


def test_update_index_mode_rules(fake: FakeS3Vectors, clock: Clock) -> None:
    clock.now = BEFORE
    c = make_client(fake)
    c.update_index_mode(**IDX, indexMode="ENHANCED")
    assert c.get_index(**IDX)["index"]["indexMode"] == "ENHANCED"
    c.update_index_mode(**IDX, indexMode="CLASSIC")  # an old bucket's index may go back
    assert c.get_index(**IDX)["index"]["indexMode"] == "CLASSIC"
    # ... but not once it has text search configurations (assumed).
    c.update_index_mode(**IDX, indexMode="ENHANCED")
    c.update_metadata_configuration(
        **IDX, add={"textSearchConfigurations": [{"metadataKey": "title"}]}
    )
    assert error_of(c.update_index_mode, **IDX, indexMode="CLASSIC")[0] == "ValidationException"
    assert c.get_index(**IDX)["index"]["indexMode"] == "ENHANCED"


def test_an_index_in_a_new_bucket_cannot_become_classic(fake: FakeS3Vectors) -> None:
    c = make_client(fake)
    code, message = error_of(c.update_index_mode, **IDX, indexMode="CLASSIC")
    assert code == "ValidationException"
    assert "September 30, 2026" in message
    assert error_of(c.update_index_mode, **IDX, indexMode="FAST")[0] == "ValidationException"


# -- text search configurations -------------------------------------------------------------------


def test_get_index_reports_text_configurations_with_language_and_status(client: Any) -> None:
    client.update_metadata_configuration(
        **IDX, add={"textSearchConfigurations": [{"metadataKey": "body", "language": "fr"}]}
    )
    config = client.get_index(**IDX)["index"]["metadataConfiguration"]
    assert config["nonFilterableMetadataKeys"] == ["body"]
    assert config["textSearchConfigurations"] == [
        {"metadataKey": "title", "status": "ACTIVE"},
        {"metadataKey": "brand", "status": "ACTIVE"},
        {"metadataKey": "body", "language": "fr", "status": "ACTIVE"},
    ]


@pytest.mark.parametrize(
    "configs",
    [
        [{"metadataKey": "title", "language": "xx"}],
        [{"metadataKey": "title"}, {"metadataKey": "title", "language": "en"}],
        [{"metadataKey": f"k{i}"} for i in range(11)],
        [{"metadataKey": "k" * 64}],
        [{"metadataKey": "title", "status": "ACTIVE"}],
    ],
    ids=["language", "key twice", "eleven", "long key", "status sent"],
)
def test_bad_text_configurations_are_refused_at_creation(
    fake: FakeS3Vectors, configs: list[dict[str, str]]
) -> None:
    c: Any = fake.client()
    c.create_vector_bucket(vectorBucketName=B)
    code, _ = error_of(
        c.create_index, **IDX, **BASE, metadataConfiguration={"textSearchConfigurations": configs}
    )
    assert code == "ValidationException"
    assert c.list_indexes(vectorBucketName=B)["indexes"] == []


def test_a_classic_index_takes_no_text_configuration(fake: FakeS3Vectors, clock: Clock) -> None:
    clock.now = BEFORE
    c: Any = fake.client()
    c.create_vector_bucket(vectorBucketName=B)
    config = {"textSearchConfigurations": [{"metadataKey": "title"}]}
    assert error_of(c.create_index, **IDX, **BASE, metadataConfiguration=config)[0] == (
        "ValidationException"
    )
    c.create_index(**IDX, **BASE)
    code, message = error_of(c.update_metadata_configuration, **IDX, add=config)
    assert (code, "ENHANCED" in message) == ("ValidationException", True)


def test_update_metadata_configuration_takes_add_or_delete(client: Any) -> None:
    add = {"textSearchConfigurations": [{"metadataKey": "body"}]}
    delete = {"textSearchConfigurations": [{"metadataKey": "brand"}]}
    assert error_of(client.update_metadata_configuration, **IDX)[0] == "ValidationException"
    assert error_of(client.update_metadata_configuration, **IDX, add=add, delete=delete)[0] == (
        "ValidationException"
    )
    assert error_of(
        client.update_metadata_configuration, **IDX, add={"textSearchConfigurations": []}
    )[0] == ("ValidationException")
    assert error_of(
        client.update_metadata_configuration,
        **IDX,
        delete={"textSearchConfigurations": [{"metadataKey": "nothing"}]},
    )[0] == ("ValidationException")
    assert error_of(
        client.update_metadata_configuration,
        **IDX,
        add={"textSearchConfigurations": [{"metadataKey": "title", "language": "en"}]},
    )[0] == ("ConflictException")
    eleven = {"textSearchConfigurations": [{"metadataKey": f"k{i}"} for i in range(9)]}
    assert error_of(client.update_metadata_configuration, **IDX, add=eleven)[0] == (
        "ValidationException"
    )
    arn = client.get_index(**IDX)["index"]["indexArn"]
    assert client.update_metadata_configuration(**IDX, delete=delete)["indexArn"] == arn
    searchable = client.get_index(**IDX)["index"]["metadataConfiguration"]
    assert [c["metadataKey"] for c in searchable["textSearchConfigurations"]] == ["title"]
    assert error_of(client.query_vectors, **IDX, topK=3, queryTexts=texts(brand="acme"))[0] == (
        "ValidationException"
    )


def test_a_configuration_added_later_indexes_the_records_already_stored(client: Any) -> None:
    assert error_of(client.query_vectors, **IDX, topK=3, queryTexts=texts(body="cotton"))[0] == (
        "ValidationException"
    )
    client.update_metadata_configuration(
        **IDX, add={"textSearchConfigurations": [{"metadataKey": "body"}]}
    )
    assert keys(client.query_vectors(**IDX, topK=3, queryTexts=texts(body="cotton"))) == ["a"]


def test_a_held_build_is_building_refuses_queries_and_changes_until_finished(
    fake: FakeS3Vectors, client: Any
) -> None:
    fake.hold_text_builds()
    client.update_metadata_configuration(
        **IDX, add={"textSearchConfigurations": [{"metadataKey": "body"}]}
    )
    config = client.get_index(**IDX)["index"]["metadataConfiguration"]["textSearchConfigurations"]
    assert {c["metadataKey"]: c["status"] for c in config} == {
        "title": "ACTIVE",
        "brand": "ACTIVE",
        "body": "BUILDING",
    }
    code, message = error_of(client.query_vectors, **IDX, topK=3, queryTexts=texts(body="cotton"))
    assert (code, "BUILDING" in message) == ("ValidationException", True)
    assert keys(client.query_vectors(**IDX, topK=3, queryTexts=texts(title="scarf"))) == ["c"]
    assert error_of(
        client.update_metadata_configuration,
        **IDX,
        delete={"textSearchConfigurations": [{"metadataKey": "title"}]},
    )[0] == ("ConflictException")
    client.put_vectors(**IDX, vectors=[vec("d", E1, body="cotton cotton")])  # while building
    fake.finish_text_builds()
    assert keys(client.query_vectors(**IDX, topK=3, queryTexts=texts(body="cotton"))) == ["d", "a"]


# -- QueryVectors: refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"queryTexts": texts(**{f"k{i}": "x" for i in range(11)})},
        {"queryTexts": texts(title="x" * 1025)},
        {
            "queryTexts": [
                {"metadataKey": "title", "text": "a"},
                {"metadataKey": "title", "text": "b"},
            ]
        },
        {"queryTexts": texts(body="cotton")},
        {"queryTexts": texts(**{"k" * 64: "x"})},
        {"queryVector": {"float32": E1}, "queryMode": "CLASSIC"},
        {"queryVector": {"float32": E1}, "queryMode": "FAST"},
        {"queryTexts": texts(title="red"), "filter": {"$or": [{"n": i} for i in range(101)]}},
    ],
    ids=[
        "nothing",
        "eleven",
        "1025 characters",
        "a key twice",
        "not searchable",
        "long key",
        "classic on enhanced",
        "unknown mode",
        "101 constraints",
    ],
)
def test_query_vectors_refuses(client: Any, request_: dict[str, Any]) -> None:
    assert error_of(client.query_vectors, **IDX, topK=3, **request_)[0] == "ValidationException"


def test_text_queries_need_an_enhanced_index_and_starts_with_an_enhanced_query(
    fake: FakeS3Vectors, clock: Clock
) -> None:
    clock.now = BEFORE
    c = make_client(fake)
    c.put_vectors(**IDX, vectors=[vec("a", E1, sku="WH-1000XM5"), vec("b", E2, sku="XB-1")])
    code, message = error_of(c.query_vectors, **IDX, topK=3, queryTexts=texts(sku="wh"))
    assert (code, "ENHANCED" in message) == ("ValidationException", True)
    # queryMode=ENHANCED lets one query pre-filter and use $startsWith without changing the index.
    starts = {"sku": {"$startsWith": "WH-"}}
    assert error_of(c.query_vectors, **IDX, topK=3, queryVector={"float32": E2}, filter=starts)[
        0
    ] == ("ValidationException")
    out = c.query_vectors(
        **IDX, topK=3, queryVector={"float32": E2}, filter=starts, queryMode="ENHANCED"
    )
    assert keys(out) == ["a"]
    # A CLASSIC query is not capped at 100 constraints; an ENHANCED one is.
    many = {"$or": [{"sku": f"s{i}"} for i in range(100)] + [{"sku": "XB-1"}]}
    assert keys(c.query_vectors(**IDX, topK=3, queryVector={"float32": E1}, filter=many)) == ["b"]
    assert error_of(
        c.query_vectors,
        **IDX,
        topK=3,
        queryVector={"float32": E1},
        filter=many,
        queryMode="ENHANCED",
    )[0] == ("ValidationException")


def test_starts_with_on_an_enhanced_index_and_exactly_100_constraints(client: Any) -> None:
    q = {"float32": E1}
    out = client.query_vectors(
        **IDX, topK=3, queryVector=q, filter={"title": {"$startsWith": "red"}}
    )
    assert sorted(keys(out)) == ["a", "c"]
    hundred = {"$or": [{"brand": f"b{i}"} for i in range(99)] + [{"brand": "globex"}]}
    assert keys(client.query_vectors(**IDX, topK=3, queryVector=q, filter=hundred)) == ["b"]


# -- QueryVectors: answers ------------------------------------------------------------------------


def test_a_full_text_query_returns_only_matching_records_with_bm25_scores(client: Any) -> None:
    out = client.query_vectors(
        **IDX, topK=10, queryTexts=texts(title="red", brand="acme"), returnScores=True
    )
    assert keys(out) == ["a", "c"]  # b matches neither: fewer than topK
    for item in out["vectors"]:
        assert set(item) == {"key", "scores"}  # no distance, no metadata unless asked
        assert set(item["scores"]) == {"bm25Scores"}
        assert [s["metadataKey"] for s in item["scores"]["bm25Scores"]] == ["title", "brand"]
    only_title = client.query_vectors(
        **IDX, topK=10, queryTexts=texts(title="jacket", brand="acme"), returnScores=True
    )
    by_key = {v["key"]: v["scores"]["bm25Scores"] for v in only_title["vectors"]}
    assert [s["metadataKey"] for s in by_key["b"]] == ["title"]  # keys not matched are left out
    plain = client.query_vectors(**IDX, topK=10, queryTexts=texts(title="red"))
    assert all("scores" not in v for v in plain["vectors"])


def test_whitespace_text_is_accepted_and_matches_nothing(client: Any) -> None:
    assert client.query_vectors(**IDX, topK=3, queryTexts=texts(title="  "))["vectors"] == []


def test_a_vector_query_gets_no_scores(client: Any) -> None:
    out = client.query_vectors(
        **IDX, topK=3, queryVector={"float32": E1}, returnScores=True, returnDistance=True
    )
    assert all(set(v) == {"key", "distance"} for v in out["vectors"])


def test_a_hybrid_query_fuses_and_says_which_ranking_each_result_came_from(client: Any) -> None:
    out = client.query_vectors(
        **IDX,
        topK=2,
        queryVector={"float32": E2},
        queryTexts=texts(title="scarf"),
        returnScores=True,
        returnDistance=True,
        returnMetadata=True,
    )
    # Vector top 2: b (0.0), then a and c tie at 1.0 (a by key); text top 2: c only.
    # fused: b 1/61, c 1/61 (text), a 1/62: b and c tie, ties go by key.
    assert keys(out) == ["b", "c"]
    b, c = out["vectors"]
    assert b["scores"] == {"fused": pytest.approx(1 / 61), "vectorDistance": 0.0}
    assert b["distance"] == 0.0
    assert set(c["scores"]) == {"fused", "bm25Scores"}  # c was not in the vector top 2
    assert "distance" not in c
    assert c["metadata"]["title"] == "red wool scarf"


def test_each_ranking_feeds_only_its_top_k_into_the_fusion(client: Any) -> None:
    client.create_index(vectorBucketName=B, indexName="window", **BASE)
    window = {"vectorBucketName": B, "indexName": "window"}
    client.update_metadata_configuration(
        **window, add={"textSearchConfigurations": [{"metadataKey": "title"}]}
    )
    # Vector ranking for E1: x, m, z, y. Text ranking for "beta": y, m, z (x has no beta).
    client.put_vectors(
        **window,
        vectors=[
            vec("x", E1, title="alpha"),
            vec("m", [1.0, 0.3, 0.0, 0.0], title="beta delta"),
            vec("z", [1.0, 1.0, 0.0, 0.0], title="beta delta epsilon omega"),
            vec("y", E3, title="beta"),
        ],
    )
    request = {**window, "queryVector": {"float32": E1}, "queryTexts": texts(title="beta")}
    # With whole rankings m (2nd twice: 2/62) beats y (1/61 + 1/64), z (2/63) and x (1/61) ...
    assert keys(client.query_vectors(**request, topK=4)) == ["m", "y", "z", "x"]
    # ... but each ranking feeds its top topK only: x and y (1/61 each, tie by key).
    assert keys(client.query_vectors(**request, topK=1)) == ["x"]


def test_writes_are_seen_by_the_next_query(client: Any) -> None:
    def search(word: str) -> list[str]:
        return keys(client.query_vectors(**IDX, topK=5, queryTexts=texts(title=word)))

    client.put_vectors(**IDX, vectors=[vec("a", E1, title="green parka")])  # upsert
    assert search("dress") == []
    assert search("parka") == ["a"]
    client.delete_vectors(**IDX, keys=["a"])  # the last row (c) moves into a's place
    assert search("parka") == []
    assert search("scarf") == ["c"]
    client.put_vectors(**IDX, vectors=[vec("e", E1, title=["wool", "scarf"], brand=7)])
    assert sorted(search("scarf")) == ["c", "e"]  # each string of a list is indexed


def test_results_are_paged_when_a_page_size_is_set(client: Any, fake: FakeS3Vectors) -> None:
    fake.query_page_size = 1
    request = {**IDX, "topK": 3, "queryTexts": texts(title="red dress jacket")}
    first = client.query_vectors(**request)
    assert len(first["vectors"]) == 1 and first["nextToken"]
    pages = [first]
    while "nextToken" in pages[-1]:
        pages.append(client.query_vectors(**request, nextToken=pages[-1]["nextToken"]))
    fake.query_page_size = None
    whole = client.query_vectors(**request)
    assert [k for p in pages for k in keys(p)] == keys(whole)
    assert len(pages) == 3
    other = {**request, "topK": 2}
    assert error_of(client.query_vectors, **other, nextToken=first["nextToken"])[0] == (
        "ValidationException"
    )
    fake.query_page_size = 2
    paginator = client.get_paginator("query_vectors")
    collected = [k for page in paginator.paginate(**request) for k in keys(page)]
    assert collected == keys(whole)
