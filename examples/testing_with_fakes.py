"""Testing your own code that uses crossmodal-search, with no AWS account and no network.

``FakeBedrock`` and ``FakeS3Vectors`` answer real boto3 clients at botocore's HTTP boundary, so
your code runs the same request serialisation and response parsing as against AWS. Copy these
functions into your test suite (pytest collects ``test_*`` functions).
"""

from __future__ import annotations

from crossmodal_search.search import CrossmodalSearcher


# --8<-- [start:app]
def best_matches(searcher: CrossmodalSearcher, description: str) -> list[str]:
    """Your application code: product ids for a shopper's description."""
    return [hit.product_id for hit in searcher.search(description, top_k=2)]


# --8<-- [end:app]


# --8<-- [start:test]
def test_best_matches() -> None:
    from crossmodal_search import CrossmodalSearcher, NovaEmbeddings, Product, S3VectorsStore
    from crossmodal_search.testing import FakeBedrock, FakeS3Vectors

    bedrock = FakeBedrock()  # deterministic vectors; records every request body
    s3vectors = FakeS3Vectors()  # an in-memory S3 Vectors service with the real limits
    searcher = CrossmodalSearcher(
        NovaEmbeddings(client=bedrock.client(), dimension=256),
        S3VectorsStore("test-bucket", "products", client=s3vectors.client(), dimension=256),
    )
    searcher.index(
        [
            Product(product_id="mug-red", text="Red ceramic coffee mug"),
            Product(product_id="lamp-brass", text="Brass desk lamp with green shade"),
        ]
    )
    assert best_matches(searcher, "red coffee mug")[0] == "mug-red"
    purposes = [r["singleEmbeddingParams"]["embeddingPurpose"] for r in bedrock.requests]
    assert purposes == ["GENERIC_INDEX", "GENERIC_INDEX", "GENERIC_RETRIEVAL"]


# --8<-- [end:test]


# --8<-- [start:failures]
def test_throttling_is_retried_and_rejections_are_reported() -> None:
    from crossmodal_search import (
        CrossmodalSearcher,
        LocalVectorStore,
        NovaEmbeddings,
        Product,
        RetryPolicy,
    )
    from crossmodal_search.testing import FakeBedrock

    bedrock = FakeBedrock()
    no_wait = RetryPolicy(sleep=lambda seconds: None)  # retry instantly in tests
    embedder = NovaEmbeddings(client=bedrock.client(), dimension=256, retry_policy=no_wait)
    searcher = CrossmodalSearcher(embedder, LocalVectorStore(dimension=256), max_concurrency=1)

    bedrock.fail_next("ThrottlingException", times=2)  # retried by the SDK, then succeeds
    assert searcher.index([Product(product_id="a", text="blue mug")]).indexed == 1

    bedrock.fail_next("ValidationException", message="input text was rejected")
    report = searcher.index([Product(product_id="b", text="something Nova refuses")])
    assert [(f.product_id, f.kind) for f in report.failed] == [("b", "text")]


# --8<-- [end:failures]


if __name__ == "__main__":
    test_best_matches()
    test_throttling_is_retried_and_rejections_are_reported()
    print("ok")
