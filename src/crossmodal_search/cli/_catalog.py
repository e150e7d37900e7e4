"""How ``crossmodal index`` reads its catalog: an ABO directory or a JSON-lines file, variant
groups, how many photos per product, and photos held out for evaluation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from crossmodal_search._constants import VariantSource
from crossmodal_search.cli._common import positive_int
from crossmodal_search.errors import InvalidInputError

if TYPE_CHECKING:
    from crossmodal_search.search import Product

__all__ = ["add_catalog_args", "load_catalog"]


def add_catalog_args(parser: argparse.ArgumentParser) -> None:
    """How ``crossmodal index`` reads CATALOG: image root, variant groups, photos, hold-out."""
    group = parser.add_argument_group(
        "catalog",
        "How CATALOG is read. Each photo of a product (ABO other_image_id, JSON-lines images) "
        "is embedded as its own image vector: one call and one vector per photo.",
    )
    group.add_argument(
        "--image-root",
        metavar="DIR_OR_S3",
        help="where ABO image paths resolve (default: CATALOG/images/small; may be s3://...)",
    )
    group.add_argument(
        "--variants-from",
        choices=get_args(VariantSource),
        help="ABO: listings sharing this field (and brand) are variants of one product, "
        "for search --collapse variant (default: no variant groups)",
    )
    group.add_argument(
        "--max-images",
        type=positive_int,
        default=8,
        metavar="N",
        help="photos per product with the main one (default: 8); more: ABO cuts, JSONL refuses",
    )
    group.add_argument(
        "--main-image-only",
        action="store_true",
        help="index each product's main photo only (extra photos stored before are deleted)",
    )
    group.add_argument(
        "--hold-out",
        metavar="QUERIES.jsonl",
        help="leave out of the index every photo these labelled queries use (crossmodal eval "
        "--build-from-catalog writes held-out photo queries): their figures stay honest",
    )


def load_catalog(args: argparse.Namespace) -> tuple[list[Product], str]:
    """The products of CATALOG (an ABO directory or a JSON-lines file) and a summary line;
    with ``--hold-out``, without the photos the labelled queries use."""
    from crossmodal_search.datasets import load_abo
    from crossmodal_search.search import load_products

    path = Path(args.catalog).expanduser()
    if path.is_dir():
        # Warns on stderr (a WARNING log line) when none of the images exists.
        photos = 1 if args.main_image_only else args.max_images
        catalog = load_abo(
            path,
            limit=args.limit,
            image_root=args.image_root,
            max_images=photos,
            variants_from=args.variants_from,
        )
        summary = (
            f"catalog: {len(catalog.products)} products from ABO directory {path} "
            f"({catalog.skipped_no_content} listings without content skipped, "
            f"{catalog.duplicates} duplicates, {catalog.missing_images} missing images)"
        )
        return _hold_out(args.hold_out, catalog.products, summary)
    if path.is_file():
        products = load_products(path, limit=args.limit)
        return _hold_out(args.hold_out, products, f"catalog: {len(products)} products from {path}")
    raise InvalidInputError(f"catalog not found: {path} (an ABO directory or a .jsonl file)")


def _hold_out(path: str | None, products: list[Product], summary: str) -> tuple[list[Product], str]:
    """The products without the extra photos the labelled queries at ``path`` use."""
    if path is None:
        return products, summary
    from crossmodal_search.evaluation import hold_out, read_queries

    kept = hold_out(products, read_queries(path))
    dropped = sum(len(p.images) for p in products) - sum(len(p.images) for p in kept)
    return kept, f"{summary}; {dropped} photos held out (used by the queries in {path})"
