"""``crossmodal search``: query a store by text, image or both; a table or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from crossmodal_search._constants import DEFAULT_LEXICAL_WEIGHT, SearchMode
from crossmodal_search.cli._common import (
    add_collapse_arg,
    add_embedder_args,
    add_store_args,
    no_results_hint,
    open_searcher,
    parse_filter,
    show_results,
    top_k,
    weight,
)
from crossmodal_search.errors import UnsupportedMediaError

if TYPE_CHECKING:
    from crossmodal_search.search import CrossmodalSearcher


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``search`` sub-command."""
    parser = sub.add_parser(
        "search",
        help="search by text, by image, or both",
        description="Search an indexed catalog. Give a TEXT, an --image, or both.",
    )
    parser.add_argument("text", nargs="?", metavar="TEXT", help="what to look for")
    parser.add_argument("--image", metavar="PATH", help="a photo (local file or s3:// URI)")
    parser.add_argument(
        "--mode",
        choices=get_args(SearchMode),
        default="combined",
        help="which stored vectors to search: the products' text, image or combined vectors, "
        "the segments of their video, audio or document (indexed with --media-s3-uri or from "
        "PDFs), or all (default: %(default)s)",
    )
    parser.add_argument("--top-k", type=top_k, default=5, help="products to return (1..100)")
    parser.add_argument(
        "--filter",
        type=parse_filter,
        metavar="JSON",
        help='metadata filter, e.g. \'{"color": "red"}\' or \'{"product_type": {"$in": [...]}}\'',
    )
    parser.add_argument(
        "--fusion",
        choices=("mean", "rrf"),
        default="mean",
        help="text+image: one query with the weighted mean vector (mean, default) or "
        "reciprocal rank fusion of two queries (rrf)",
    )
    parser.add_argument(
        "--text-weight",
        type=weight,
        default=0.5,
        help="weight of the text when both are given, 0..1 (default: %(default)s)",
    )
    parser.add_argument(
        "--hybrid",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rank by the query's words too (BM25 over the store's full-text fields): "
        "--hybrid requires it, --no-hybrid turns it off; default: on when the store has "
        "full-text fields",
    )
    parser.add_argument(
        "--lexical-weight",
        type=weight,
        default=DEFAULT_LEXICAL_WEIGHT,
        help="the words' share of a hybrid score, 0..1 (default: %(default)s)",
    )
    add_collapse_arg(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="query the index directly: the nearest vectors with their keys, distances and "
        "metadata, for any S3 Vectors or local index (one written by another tool too); "
        "--mode, --fusion and product grouping do not apply",
    )
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run, _parser=parser)


def run(args: argparse.Namespace) -> int:
    """Run one query and print the results."""
    if args.text is None and args.image is None:
        args._parser.error("give a TEXT, an --image PATH, or both")
    if args.image is not None and not args.image.startswith("s3://"):
        if not Path(args.image).expanduser().is_file():
            raise UnsupportedMediaError(f"image file not found: {args.image}")
        args.image = str(Path(args.image).expanduser())
    searcher, description = open_searcher(args, read_only=True)
    if args.raw:
        with searcher:
            return _raw(args, searcher, description)
    with searcher:
        results = searcher.search(
            args.text,
            args.image,
            search_mode=args.mode,
            top_k=args.top_k,
            filter=args.filter,
            text_weight=args.text_weight,
            fusion=args.fusion,
            hybrid=args.hybrid,
            lexical_weight=args.lexical_weight,
            collapse=args.collapse,
        )
        hint = no_results_hint(searcher, results, args)
    return show_results(
        results,
        description=description,
        store=args.store,
        query={
            "text": args.text,
            "image": args.image,
            "mode": args.mode,
            "top_k": args.top_k,
            "filter": args.filter,
            "fusion": args.fusion,
            "text_weight": args.text_weight,
            "hybrid": args.hybrid,
            "lexical_weight": args.lexical_weight,
            "collapse": args.collapse,
        },
        as_json=args.json,
        hint=hint,
    )


def _raw(args: argparse.Namespace, searcher: CrossmodalSearcher, description: str) -> int:
    """``--raw``: embed the query (the weighted mean of text and photo) and print the store's
    own answer: keys, distances, metadata."""
    import numpy as np

    from crossmodal_search import EmbeddingPurpose

    purpose = EmbeddingPurpose.GENERIC_RETRIEVAL
    vectors = []
    if args.text is not None:
        weight = args.text_weight if args.image is not None else 1.0
        vectors.append((searcher.embedder.embed_text(args.text, purpose=purpose), weight))
    if args.image is not None:
        weight = 1.0 - args.text_weight if args.text is not None else 1.0
        vectors.append((searcher.embedder.embed_image(args.image, purpose=purpose), weight))
    query = sum(w * v / np.linalg.norm(v) for v, w in vectors)
    matches = searcher.store.query(np.asarray(query), top_k=args.top_k, filter=args.filter)
    if args.json:
        found = [{"key": m.key, "distance": m.distance, "metadata": m.metadata} for m in matches]
        print(json.dumps({"store": args.store, "results": found}, indent=2, ensure_ascii=False))
        return 0
    print(description)
    if not matches:
        print("  (no results)")
    for rank, m in enumerate(matches, 1):
        metadata = json.dumps(m.metadata, ensure_ascii=False)
        metadata = metadata if len(metadata) <= 120 else metadata[:119] + "…"
        print(f"{rank:>2}  {m.distance:.4f}  {m.key}  {metadata}")
    return 0
