"""The AWS sample notebook's flow, done with crossmodal-search: Amazon Nova + Amazon S3 Vectors.

It follows ``product-multimodal-search-s3-vectors.ipynb`` (aws-samples/amazon-nova-samples):

1. take the first listings of the Amazon Berkeley Objects dataset (``listings_0.json.gz``) that
   have an English name, with their main image;
2. create a vector bucket and an index (``S3VectorsStore`` creates them when missing);
3. embed each product's name and image with Nova (``GENERIC_INDEX``) and store the text, image
   and combined vectors (the notebook stores only the 50/50 combined one);
4. query by image, by the text "15-ounce drinkware", and by text + another image (50/50).

Unlike the notebook, a rerun skips products already indexed, queries use the retrieval purpose
Nova prescribes, results are one per product, and nothing is deleted unless ``--cleanup``.

Needs AWS credentials allowed to do what docs/iam.md lists ("index and search on S3 Vectors").
Costs: ``--limit 100`` makes 200 InvokeModel calls and stores 300 vectors (a few US cents)::

    python examples/aws_sample_flow.py --bucket my-product-vectors --limit 100 [--cleanup]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from crossmodal_search.search import CrossmodalSearcher, Product, SearchResult

ABO_BUCKET = "amazon-berkeley-objects"
ABO_FILES = ("listings/metadata/listings_0.json.gz", "images/metadata/images.csv.gz")


def public_s3_client(region: str) -> S3Client:
    """An anonymous S3 client: the ABO bucket is public (no credentials used for it)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client("s3", region_name=region, config=Config(signature_version=UNSIGNED))


def download_abo_subset(dest: Path, *, limit: int, region: str) -> list[Product]:
    """Fetch listings_0, images.csv and the main images of the first ``limit`` English items."""
    from crossmodal_search.datasets import load_abo

    s3 = public_s3_client(region)
    for key in ABO_FILES:
        target = dest / key
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(ABO_BUCKET, key, str(target))
    # Resolve image paths to the public bucket first, then download just the ones we keep.
    catalog = load_abo(dest, image_root=f"s3://{ABO_BUCKET}/images/small/")
    english = [
        p
        for p in catalog.products
        if str(p.metadata.get("language", "")).startswith("en") and p.image is not None
    ][:limit]
    products = []
    for product in english:
        assert product.image is not None
        key = product.image.removeprefix(f"s3://{ABO_BUCKET}/")
        local = dest / key
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(ABO_BUCKET, key, str(local))
        products.append(product.model_copy(update={"image": str(local)}))
    return products


# --8<-- [start:searcher]
def build_searcher(bucket: str, index: str, region: str, dimension: int) -> CrossmodalSearcher:
    """Nova embeddings + an S3 Vectors index (bucket and index are created when missing)."""
    from crossmodal_search.embeddings import NovaEmbeddings
    from crossmodal_search.search import CrossmodalSearcher
    from crossmodal_search.stores import S3VectorsStore

    embedder = NovaEmbeddings(region_name=region, dimension=dimension, cache=".nova-cache.db")
    store = S3VectorsStore(bucket, index, region_name=region, dimension=dimension)
    return CrossmodalSearcher(embedder, store)  # up to 32 Nova calls in flight, adaptive


# --8<-- [end:searcher]


def show(title: str, results: list[SearchResult]) -> None:
    """Print one result list."""
    print(f"\n{title}")
    for rank, hit in enumerate(results, 1):
        print(f"  {rank}. {hit.similarity:.3f} {hit.matched_type:<8} {hit.product_id} {hit.title}")


def index_and_query(searcher: CrossmodalSearcher, products: list[Product]) -> None:
    """Steps 3 and 4: index (resumable), then the notebook's three queries."""
    # --8<-- [start:index-and-query]
    estimate = searcher.estimate(products)
    print(f"{estimate.embed_calls} Nova calls and {estimate.vectors} vectors to write")
    report = searcher.index(products)
    print(f"indexed {report.indexed}, unchanged {report.skipped_unchanged}")
    for failure in report.failed:
        print(f"  not indexed: {failure.product_id}: {failure.reason}")

    query_image = products[0].image  # (a) an indexed photo, as the notebook does
    show("image query", searcher.search(image=query_image, search_mode="image", top_k=3))
    show("text query", searcher.search("15-ounce drinkware", top_k=3))
    show(  # (c) text + a different image, averaged 50/50 into one query vector
        "text + image query",
        searcher.search("drinkware", image=products[1].image, text_weight=0.5, top_k=3),
    )
    # --8<-- [end:index-and-query]


def cleanup(bucket: str, index: str, region: str) -> None:
    """Delete the index and the vector bucket (the notebook has no cleanup cell)."""
    import boto3

    client = boto3.client("s3vectors", region_name=region)
    client.delete_index(vectorBucketName=bucket, indexName=index)
    client.delete_vector_bucket(vectorBucketName=bucket)
    print(f"\ndeleted index {index} and vector bucket {bucket}")


def run(args: argparse.Namespace) -> None:
    """Download, index, query, optionally clean up."""
    products = download_abo_subset(Path(args.data), limit=args.limit, region=args.region)
    with build_searcher(args.bucket, args.index, args.region, args.dimension) as searcher:
        index_and_query(searcher, products)
    if args.cleanup:
        cleanup(args.bucket, args.index, args.region)


def main() -> None:
    """Parse arguments and run the flow."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bucket", required=True, help="vector bucket name (created if needed)")
    parser.add_argument("--index", default="product", help="vector index name")
    parser.add_argument("--region", default="us-east-1", help="where Nova is available")
    parser.add_argument("--dimension", type=int, default=1024, choices=(256, 384, 1024, 3072))
    parser.add_argument("--limit", type=int, default=100, help="products to index")
    parser.add_argument("--data", default="abo-data", help="local folder for the ABO subset")
    parser.add_argument("--cleanup", action="store_true", help="delete the index and bucket")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
