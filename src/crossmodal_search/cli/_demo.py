"""``crossmodal demo``: sample catalog -> local index -> a text, an image, a text+image and a
model-number query, similar products and one result per variant family."""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_search.cli._common import (
    ProgressBar,
    add_embedder_args,
    make_searcher,
    render_results,
    top_k,
)

if TYPE_CHECKING:
    from crossmodal_search.datasets import SampleQuery
    from crossmodal_search.search import CrossmodalSearcher, SearchResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command."""
    parser = sub.add_parser(
        "demo",
        help="index a generated sample catalog locally and run example searches",
        description="Write a small sample catalog in Amazon Berkeley Objects format (generated "
        "product photos and descriptions), index it into a local store and run a text query, "
        "an image query, a text+image query and a model-number query, then show a product's "
        "similar products and one result per variant family (the sample's sneakers come in "
        "three colours per brand). Works without AWS credentials or network "
        "(offline embedder); with credentials, --embedder auto uses Amazon Nova.",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="keep the catalog and the store in DIR (default: a temporary directory, removed)",
    )
    parser.add_argument("--top-k", type=top_k, default=5, help="results per query (default: 5)")
    add_embedder_args(parser)
    parser.set_defaults(func=run)


def _query_title(number: int, query: SampleQuery) -> str:
    parts = []
    if query.text is not None:
        parts.append(f"text {query.text!r}")
    if query.image is not None:
        parts.append(f"photo {query.image}")
    options = f"search_mode={query.search_mode}"
    if query.text is not None and query.image is not None:
        options += f", text_weight={query.text_weight}"
    return f"{number}. {query.name} query: {' + '.join(parts)}  ({options})\n   {query.description}"


def _rank(query: SampleQuery, results: list[SearchResult]) -> str:
    ranks = [r.product_id for r in results]
    if query.expected in ranks:
        return f"rank {ranks.index(query.expected) + 1}"
    return f"not in the top {len(results)}"


def _verdict(
    query: SampleQuery, results: list[SearchResult], vectors: list[SearchResult] | None
) -> str:
    line = f"   expected {query.expected}: {_rank(query, results)}"
    if vectors is not None and _rank(query, vectors) != _rank(query, results):
        line += f" (by vectors alone, without the words: {_rank(query, vectors)})"
    return line


def _search(
    searcher: CrossmodalSearcher,
    query: SampleQuery,
    root: Path,
    top_k: int,
    *,
    hybrid: bool | None,
) -> list[SearchResult]:
    image = query.image_path(root)
    return searcher.search(
        query.text,
        str(image) if image is not None else None,
        search_mode=query.search_mode,
        text_weight=query.text_weight,
        top_k=top_k,
        hybrid=hybrid,
    )


#: The product whose similar products the demo shows: green sneakers of a family in 3 colours.
SIMILAR_TO = "B0SAMPLE21"


def _similar(searcher: CrossmodalSearcher, number: int, top_k: int) -> None:
    """Similar products of one product, its own family left out (no embedding call), then one
    search collapsed by variant family."""
    view = searcher.get_product(SIMILAR_TO)
    title = view.title if view is not None else SIMILAR_TO
    print()
    print(f"{number}. similar products: like {SIMILAR_TO}, {title}")
    print("   (search_mode=text, collapse=variant): ranked by its own stored text vector, no")
    print("   embedding call; its own family (its other colours) is left out, and a family found")
    print("   is one row, its other members listed under it")
    similar = searcher.similar(SIMILAR_TO, top_k=top_k, search_mode="text", collapse="variant")
    print(render_results(similar))
    print()
    print(f"{number + 1}. one result per family: text 'running sneakers'  (collapse=variant)")
    print("   each brand's sneakers come in three colours, one product: one row each")
    print(render_results(searcher.search("running sneakers", top_k=top_k, collapse="variant")))


def run(args: argparse.Namespace) -> int:
    """Build, index and query the sample catalog; print a result table per sample query."""
    from crossmodal_search.datasets import SAMPLE_QUERIES, load_abo, write_sample_catalog

    started = time.perf_counter()
    keep = args.dir is not None
    workdir = Path(args.dir).expanduser() if keep else Path(tempfile.mkdtemp(prefix="crossmodal-"))
    try:
        root = write_sample_catalog(workdir / "catalog")
        catalog = load_abo(root, variants_from="model_name")
        store_spec = f"local:{workdir / 'store'}"
        searcher, description = make_searcher(
            store=store_spec, embedder=args.embedder, dimension=args.dimension, cache=args.cache
        )
        with searcher:
            print(description)
            print(
                f"sample catalog: {len(catalog.products)} products in ABO format at {root} "
                f"({catalog.skipped_no_content} listing without content skipped)"
            )
            bar = ProgressBar("indexing")
            try:
                report = searcher.index(catalog.products, progress=bar)
            finally:
                bar.close()
            print(
                f"indexed {report.indexed} products ({report.skipped_unchanged} already indexed), "
                f"{report.vectors_written} vectors, {report.embed_calls} embedding calls "
                f"in {report.seconds:.1f} s"
            )
            for failure in report.failed:
                print(f"  not indexed: {failure.product_id} ({failure.kind}): {failure.reason}")
            hybrid = bool(searcher.text_fields)
            for number, query in enumerate(SAMPLE_QUERIES, 1):
                results = _search(searcher, query, root, args.top_k, hybrid=None)
                # Hybrid search at work: the same query by vectors alone, when words count.
                vectors = None
                if hybrid and query.text is not None:
                    vectors = _search(searcher, query, root, args.top_k, hybrid=False)
                print()
                print(_query_title(number, query))
                print(render_results(results))
                print(_verdict(query, results, vectors))
            _similar(searcher, len(SAMPLE_QUERIES) + 1, args.top_k)
        print()
        if keep:
            store_arg = shlex.quote(store_spec)
            print(f"kept in {workdir}; try:")
            print(f"  crossmodal search --store {store_arg} --embedder {args.embedder} 'blue mug'")
        print(f"demo finished in {time.perf_counter() - started:.1f} s")
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
