"""Quickstart: build a sample catalog, index it, search it. Runs offline, no AWS account needed.

Swap ``OfflineEmbedder()`` for ``NovaEmbeddings()`` (Amazon Bedrock) and ``LocalVectorStore`` for
``S3VectorsStore("my-bucket", "products", dimension=1024)`` to run the same code on AWS.
"""

from __future__ import annotations


def main() -> None:
    """Index the sample catalog into ./quickstart-vectors and run one query."""
    # --8<-- [start:quickstart]
    from crossmodal_search import CrossmodalSearcher, LocalVectorStore, OfflineEmbedder
    from crossmodal_search.datasets import load_abo, write_sample_catalog

    catalog = load_abo(write_sample_catalog("sample-catalog"))
    store = LocalVectorStore("quickstart-vectors", dimension=1024)
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=1024), store)
    searcher.index(catalog.products)
    for hit in searcher.search("red summer dress", top_k=3):
        print(f"{hit.similarity:.3f}  {hit.product_id}  {hit.title}")
    # --8<-- [end:quickstart]
    store.close()


if __name__ == "__main__":
    main()
