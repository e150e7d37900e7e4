"""``crossmodal index``: embed a catalog (ABO directory or products.jsonl) into a store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crossmodal_search.cli._common import (
    ProgressBar,
    add_embedder_args,
    add_store_args,
    make_searcher,
    open_searcher,
    positive_int,
)
from crossmodal_search.errors import InvalidInputError, ResourceNotFoundError
from crossmodal_search.search import (
    CrossmodalSearcher,
    IngestReport,
    Product,
    load_abo,
    load_products,
)
from crossmodal_search.stores._open import parse_store_spec


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``index`` sub-command."""
    parser = sub.add_parser(
        "index",
        help="embed a catalog into a store (resumable: a rerun skips what is already indexed)",
        description="Embed a catalog into a store. CATALOG is an Amazon Berkeley Objects "
        "directory (listings/metadata/listings_*.json.gz + images/metadata/images.csv.gz) or a "
        "JSON-lines file of products ({product_id, text, image, metadata} per line). Reruns "
        "skip products whose content is already indexed and re-embed changed ones.",
    )
    parser.add_argument("catalog", metavar="CATALOG", help="ABO directory or products.jsonl")
    parser.add_argument("--limit", type=positive_int, help="index at most N products")
    parser.add_argument(
        "--image-root",
        metavar="DIR_OR_S3",
        help="where ABO image paths resolve (default: CATALOG/images/small; may be s3://...)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report the embedding calls, vectors and bytes it would take; change nothing",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=8, help="embedding calls in flight"
    )
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run)


def _load(args: argparse.Namespace) -> tuple[list[Product], str]:
    path = Path(args.catalog).expanduser()
    if path.is_dir():
        catalog = load_abo(path, limit=args.limit, image_root=args.image_root)
        summary = (
            f"catalog: {len(catalog.products)} products from ABO directory {path} "
            f"({catalog.skipped_no_content} listings without content skipped, "
            f"{catalog.duplicates} duplicates, {catalog.missing_images} missing images)"
        )
        return catalog.products, summary
    if path.is_file():
        products = load_products(path, limit=args.limit)
        return products, f"catalog: {len(products)} products from {path}"
    raise InvalidInputError(f"catalog not found: {path} (an ABO directory or a .jsonl file)")


def _print_report(report: IngestReport) -> None:
    print(
        f"indexed {report.indexed} products, {report.skipped_unchanged} unchanged, "
        f"{len(report.failed)} failed; {report.vectors_written} vectors written, "
        f"{report.vectors_deleted} stale vectors deleted, {report.embed_calls} embedding calls "
        f"in {report.seconds:.1f} s"
    )
    for failure in report.failed:
        print(f"  failed {failure.product_id} ({failure.kind}): {failure.reason}", file=sys.stderr)


def _open_for_estimate(args: argparse.Namespace) -> tuple[CrossmodalSearcher, str]:
    """The target store read-only when it exists, else an empty in-memory one: never create."""
    kind, location, _ = parse_store_spec(args.store)
    if not (kind == "local" and location is not None and not Path(location).is_dir()):
        try:
            return open_searcher(args, read_only=True)
        except ResourceNotFoundError:
            pass
    searcher, description = make_searcher(
        store="memory:",
        embedder=args.embedder,
        dimension=args.dimension,
        region=args.region,
        cache=args.cache,
    )
    embedder_line = description.splitlines()[0]
    return (
        searcher,
        f"{embedder_line}\nstore: {args.store} does not exist yet: every product is new",
    )


def _dry_run(args: argparse.Namespace, products: list[Product], summary: str) -> int:
    searcher, description = _open_for_estimate(args)
    with searcher:
        print(description)
        print(summary)
        est = searcher.estimate(products)
    print(
        f"dry run: {est.to_embed} products to embed, {est.unchanged} unchanged, "
        f"{est.metadata_only} metadata-only updates, {est.invalid} invalid\n"
        f"  embedding calls: {est.embed_calls} ({est.text_calls} text, "
        f"{est.image_calls} image), image bytes sent: {est.image_bytes:,}\n"
        f"  vectors to write: {est.vectors} in {est.put_requests} write requests "
        f"({est.vector_bytes:,} vector bytes, {est.metadata_bytes:,} metadata bytes); "
        f"stale vectors to delete: {est.stale_vectors}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Load, then index (or estimate); exit 1 when some products failed."""
    products, summary = _load(args)
    if args.dry_run:
        return _dry_run(args, products, summary)
    searcher, description = open_searcher(args)
    with searcher:
        print(description)
        print(summary)
        bar = ProgressBar("indexing")
        try:
            report = searcher.index(products, progress=bar)
        finally:
            bar.close()
    _print_report(report)
    if report.failed:
        print(
            f"crossmodal: {len(report.failed)} products were not indexed (listed above); "
            "fix them and rerun: indexed products are skipped",
            file=sys.stderr,
        )
        return 1
    return 0
