"""``crossmodal similar``: the products closest to one indexed product; a table or JSON."""

from __future__ import annotations

import argparse
from typing import get_args

from crossmodal_search._constants import SearchMode
from crossmodal_search.cli._common import (
    add_collapse_arg,
    add_embedder_args,
    add_store_args,
    no_results_hint,
    open_searcher,
    parse_filter,
    show_results,
    top_k,
)
from crossmodal_search.errors import InvalidInputError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``similar`` sub-command."""
    parser = sub.add_parser(
        "similar",
        help="products similar to an indexed product (no embedding call)",
        description="List the products closest to the indexed product ID, ranked by its own "
        "stored vector: no embedding call, the product itself never listed. Exits with 1 when "
        "the store holds no product ID.",
    )
    parser.add_argument("product_id", metavar="ID", help="the product's id, as indexed")
    parser.add_argument(
        "--mode",
        choices=get_args(SearchMode),
        default="combined",
        help="which stored vectors to rank: text or image (the product's vector of that type), "
        "combined, a media type or all (its combined vector) (default: %(default)s)",
    )
    parser.add_argument("--top-k", type=top_k, default=5, help="products to return (1..100)")
    parser.add_argument(
        "--filter",
        type=parse_filter,
        metavar="JSON",
        help='metadata filter, e.g. \'{"color": "red"}\' or \'{"product_type": {"$in": [...]}}\'',
    )
    add_collapse_arg(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Rank the product's neighbours and print them."""
    if not args.product_id.strip():
        raise InvalidInputError("the product id must not be blank")
    searcher, description = open_searcher(args, read_only=True)
    with searcher:
        results = searcher.similar(
            args.product_id,
            top_k=args.top_k,
            search_mode=args.mode,
            filter=args.filter,
            collapse=args.collapse,
        )
        hint = no_results_hint(searcher, results, args)
    return show_results(
        results,
        description=description,
        store=args.store,
        query={
            "product_id": args.product_id,
            "mode": args.mode,
            "top_k": args.top_k,
            "filter": args.filter,
            "collapse": args.collapse,
        },
        as_json=args.json,
        hint=hint,
    )
