"""``crossmodal eval``: measure search quality on labelled queries and compare settings.

Three ways in::

    crossmodal eval QUERIES.jsonl --store local:DIR        # compare settings on an index
    crossmodal eval --sample demo/catalog                  # the demo catalog, end to end
    crossmodal eval --build-from-catalog ABO_ROOT -o queries.jsonl   # make a query set
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from crossmodal_search._constants import DEFAULT_LEXICAL_WEIGHT
from crossmodal_search.cli._common import (
    ProgressBar,
    add_embedder_args,
    add_store_args,
    make_searcher,
    positive_int,
    weight,
)
from crossmodal_search.errors import InvalidInputError

if TYPE_CHECKING:
    from crossmodal_search.evaluation import (
        Comparison,
        EvalReport,
        LabelledQuery,
    )

if TYPE_CHECKING:
    from crossmodal_search.search import CrossmodalSearcher, Product

_QUERY_TYPES = ("text", "image", "text+image")


def _int_list(value: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas: {value!r}"
        ) from None
    if not items or any(i < 1 for i in items):
        raise argparse.ArgumentTypeError(f"expected positive integers, e.g. 1,5,10: {value!r}")
    return items


def _k_list(value: str) -> tuple[int, ...]:
    items = _int_list(value)
    if any(k > 100 for k in items):
        raise argparse.ArgumentTypeError(f"every k must be in 1..100: {value!r}")
    return items


def _weight_list(value: str) -> tuple[float, ...]:
    try:
        return tuple(weight(v.strip()) for v in value.split(",") if v.strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {exc}") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``eval`` sub-command."""
    parser = sub.add_parser(
        "eval",
        help="measure search quality on labelled queries and compare settings",
        description="Run a labelled query file (JSON lines: id, text and/or image, relevant "
        "product ids with optional grades) against an index. By default it compares, in one "
        "run, text vs image vs combined vectors, mean vs rrf fusion, text weights and "
        "dimensions (by Matryoshka truncation of the stored vectors, not re-embedding), "
        "prints recall/nDCG/MRR overall and per query type with each setting's embedding "
        "calls and stored bytes, and names the best setting. Where products have several "
        "photos it also compares searching each product's main photo only with every photo.",
    )
    parser.add_argument("queries", nargs="?", metavar="QUERIES.jsonl", help="labelled queries")
    parser.add_argument(
        "--k", type=_k_list, default=(1, 5, 10), metavar="K,K", help="cut-offs (default: 1,5,10)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--plot", metavar="OUT.png", help="draw recall vs text weight and vs dimension (matplotlib)"
    )
    parser.add_argument(
        "--per-query", action="store_true", help="also list each query's result (best setting)"
    )
    _add_setting_args(parser.add_argument_group("settings"))
    _add_build_args(parser.add_argument_group("building query sets"))
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run, _parser=parser)


def _add_setting_args(setting: argparse._ArgumentGroup) -> None:
    setting.add_argument(
        "--no-compare", action="store_true", help="evaluate only the base setting below"
    )
    setting.add_argument(
        "--mode",
        choices=("text", "image", "combined", "all"),
        default="combined",
        help="base: stored vectors searched (default: %(default)s)",
    )
    setting.add_argument(
        "--fusion", choices=("mean", "rrf"), default="mean", help="base: fusion (default: mean)"
    )
    setting.add_argument(
        "--text-weight", type=weight, default=0.5, help="base: text weight (default: 0.5)"
    )
    setting.add_argument(
        "--weights",
        type=_weight_list,
        default=(0.0, 0.25, 0.5, 0.75, 1.0),
        metavar="W,W",
        help="text weights to compare (default: 0,0.25,0.5,0.75,1)",
    )
    setting.add_argument(
        "--dimensions",
        type=_int_list,
        default=(256, 384, 1024, 3072),
        metavar="D,D",
        help="dimensions to compare, by truncation (default: 256,384,1024,3072)",
    )
    setting.add_argument(
        "--hybrid",
        choices=("auto", "on", "off"),
        default="auto",
        help="base: rank the query's words too (auto: when the store has full-text fields)",
    )
    setting.add_argument(
        "--lexical-weight",
        type=weight,
        default=DEFAULT_LEXICAL_WEIGHT,
        help=f"base: the words' share of a hybrid score (default: {DEFAULT_LEXICAL_WEIGHT})",
    )
    setting.add_argument(
        "--lexical-weights",
        type=_weight_list,
        default=(0.1, 0.3, 0.5, 0.7),
        metavar="W,W",
        help="lexical weights of hybrid search to compare (default: 0.1,0.3,0.5,0.7)",
    )
    setting.add_argument(
        "--primary", metavar="METRIC", help="metric that names the best (default: ndcg@<max k>)"
    )
    setting.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="queries searched at once (default: %(default)s)",
    )


def _add_build_args(build: argparse._ArgumentGroup) -> None:
    build.add_argument(
        "--build-from-catalog",
        metavar="ABO_ROOT",
        help="write queries for an ABO catalog (own image, title, held-out images) to -o",
    )
    build.add_argument("-o", "--output", metavar="QUERIES.jsonl", help="where --build-... writes")
    build.add_argument("--seed", type=int, default=0, help="query building seed (default: 0)")
    build.add_argument("--max-queries", type=positive_int, help="sample at most this many")
    build.add_argument(
        "--sample",
        metavar="DIR",
        help="the demo catalog in DIR (written if missing): write DIR/eval/queries.jsonl, "
        "tags.json and gold_tags.json, index it into --store (default: in memory) and evaluate",
    )


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _query_summary(queries: Sequence[LabelledQuery]) -> str:
    types: Counter[str] = Counter(q.query_type for q in queries)
    parts = ", ".join(f"{t} {types[t]}" for t in _QUERY_TYPES if types[t])
    return f"{len(queries)} queries ({parts})"


def _metric_columns(ks: Sequence[int]) -> list[tuple[str, str]]:
    top = max(ks)
    cols = [(f"recall@{k}", f"R@{k}") for k in ks]
    cols += [(f"ndcg@{top}", f"nDCG@{top}"), ("mrr", "MRR")]
    return cols


def _settings_table(comparison: Comparison) -> list[str]:
    ks = comparison.results[0].report.k_values
    cols = _metric_columns(ks)
    primary = comparison.primary_metric
    header = (
        f"{'sweep':<14} {'mode':<8} {'fusion':<6} {'weight':>6} {'dim':>5} {'words':>5}  "
        + " ".join(f"{label:>8}" for _, label in cols)
        + "  | "
        + " ".join(f"{t:>10}" for t in _QUERY_TYPES)
        + f" | {'calls':>6} {'searched':>10}"
    )
    indent = header.index("|") + 2
    lines = [" " * indent + f"{primary} by query type", header]
    for row in comparison.results:
        rep = row.report
        s = rep.settings
        by_type = " ".join(
            f"{rep.by_query_type[t].metrics[primary]:>10.3f}"
            if t in rep.by_query_type
            else f"{'-':>10}"
            for t in _QUERY_TYPES
        )
        marker = " *" if s == comparison.best else ""
        sweep = f"photos {s.photos}" if row.sweep == "photos" else row.sweep
        words = "auto" if s.hybrid is None else "off" if not s.hybrid else f"{s.lexical_weight:.2f}"
        lines.append(
            f"{sweep:<14} {s.search_mode:<8} {s.fusion:<6} {s.text_weight:>6.2f} "
            f"{rep.dimension:>5} {words:>5}  "
            + " ".join(f"{rep.overall.metrics[m]:>8.3f}" for m, _ in cols)
            + f"  | {by_type} | {rep.embed_calls:>6} {_fmt_bytes(rep.stored_bytes):>10}{marker}"
        )
    lines.append(
        "words = lexical weight of hybrid search (off: vectors only; auto: the searcher's "
        "default); searched = float32 bytes of the stored vectors the setting searches (its "
        "vector type(s) at its dimension)"
    )
    return lines


def _hybrid_table(comparison: Comparison) -> list[str]:
    """The hybrid sweeps by query kind (exact terms against descriptions), when run."""
    rows = [r for r in comparison.results if r.sweep in ("hybrid", "lexical_weight")]
    if not rows:
        return []
    primary = comparison.primary_metric
    kinds = sorted({k for r in rows for k in r.report.by_kind})
    if not kinds:
        return []
    width = max(8, *(len(k) for k in kinds))
    lines = [
        f"{primary} by query kind, vector-only against hybrid search:",
        f"{'words':>6}  " + " ".join(f"{k:>{width}}" for k in kinds) + f" {'all':>{width}}",
    ]
    seen: set[object] = set()
    for row in rows:
        s = row.report.settings
        if s in seen:
            continue
        seen.add(s)
        words = "off" if s.hybrid is False else f"{s.lexical_weight:.2f}"
        cells = [
            f"{row.report.by_kind[k].metrics[primary]:>{width}.3f}"
            if k in row.report.by_kind
            else f"{'-':>{width}}"
            for k in kinds
        ]
        overall = row.report.overall.metrics[primary]
        lines.append(f"{words:>6}  " + " ".join(cells) + f" {overall:>{width}.3f}")
    return lines


def _photos_table(comparison: Comparison) -> list[str]:
    """Main photo only against every photo, by query type and kind, when both ran."""
    rows = {r.report.settings.photos: r.report for r in comparison.results if r.sweep == "photos"}
    if len(rows) < 2:
        return []
    primary = comparison.primary_metric
    every = rows["all"]
    groups = [f"type {t}" for t in _QUERY_TYPES[1:] if t in every.by_query_type]
    photo_kinds = {d.kind for d in every.per_query if d.query_type != "text" and d.kind}
    groups += [f"kind {k}" for k in every.by_kind if k in photo_kinds]
    width = max(10, *(len(g) for g in groups))
    lines = [
        f"extra photos: {primary} of photo queries searching {every.settings.search_mode} "
        "vectors, each product's main photo only against every photo:",
        f"{'photos':<8} "
        + " ".join(f"{g:>{width}}" for g in groups)
        + f" {'all':>7} {'vectors':>8}",
    ]
    for which in ("main", "all"):
        rep = rows[which]
        cells = []
        for group in groups:
            kind, _, name = group.partition(" ")
            summary = (rep.by_query_type if kind == "type" else rep.by_kind).get(name)
            cells.append(
                f"{summary.metrics[primary]:>{width}.3f}" if summary else f"{'-':>{width}}"
            )
        overall = rep.overall.metrics[primary]
        lines.append(f"{which:<8} " + " ".join(cells) + f" {overall:>7.3f} {rep.stored_vectors:>8}")
    return lines


def _breakdown(report: EvalReport) -> list[str]:
    ks = report.k_values
    cols = [
        *_metric_columns(ks),
        (f"precision@{ks[0]}", f"P@{ks[0]}"),
        (f"hit_rate@{max(ks)}", f"hit@{max(ks)}"),
    ]
    lines = [f"{'group':<22} {'queries':>7}  " + " ".join(f"{label:>8}" for _, label in cols)]

    def row(name: str, summary_queries: int, metrics: dict[str, float]) -> str:
        return f"{name:<22} {summary_queries:>7}  " + " ".join(
            f"{metrics[m]:>8.3f}" for m, _ in cols
        )

    lines.append(row("all", report.overall.queries, report.overall.metrics))
    for t, summary in report.by_query_type.items():
        lines.append(row(f"type {t}", summary.queries, summary.metrics))
    for kind, summary in report.by_kind.items():
        lines.append(row(f"kind {kind}", summary.queries, summary.metrics))
    return lines


def _per_query(report: EvalReport, queries: Sequence[LabelledQuery]) -> list[str]:
    relevant = {q.id: q.relevant for q in queries}
    lines = [f"{'query':<32} {'type':<10} {'first hit':>9}  top results"]
    for d in report.per_query:
        grades = relevant.get(d.id, {})
        rank = next((i for i, p in enumerate(d.ranked, 1) if grades.get(p, 0) > 0), None)
        hit = "excluded" if d.excluded else (str(rank) if rank else "-")
        lines.append(f"{d.id[:32]:<32} {d.query_type:<10} {hit:>9}  {' '.join(d.ranked[:3])}")
    return lines


def _cost_line(report: EvalReport) -> str:
    calls = f"{report.embed_calls} embedding calls"
    if report.bedrock_calls is not None:
        calls += f" ({report.bedrock_calls} made to Bedrock)"
    return (
        f"{calls}; {report.stored_vectors} stored vectors of the searched type(s), "
        f"{_fmt_bytes(report.stored_bytes)}; "
        f"{report.seconds:.1f} s"
    )


def _print_comparison(
    comparison: Comparison, queries: Sequence[LabelledQuery], args: argparse.Namespace
) -> None:
    best = comparison.best_report
    stored = comparison.stored_dimension
    print(f"{_query_summary(queries)}; k = {', '.join(map(str, best.k_values))}")
    if best.excluded_queries:
        print(f"{len(best.excluded_queries)} queries without relevant items are not averaged")
    print(
        f"dimension sweep: Matryoshka truncation of the stored {stored}-d vectors "
        "(not re-embedding); calls = embedding calls the setting needs per run"
    )
    print()
    for line in _settings_table(comparison):
        print(line)
    for table in (_hybrid_table(comparison), _photos_table(comparison)):
        if table:
            print()
            for line in table:
                print(line)
    for skip in comparison.skipped:
        print(f"skipped {skip.sweep} {skip.settings.label}: {skip.reason}")
    made = f"embedding calls made in this run: {comparison.embed_calls_made}"
    if comparison.bedrock_calls is not None:
        made += f" (Bedrock: {comparison.bedrock_calls})"
    print(made + " - query vectors are reused across settings")
    print()
    print(f"best setting: {comparison.best.label} - {comparison.best_reason}")
    print(f"  cost: {_cost_line(best)}")
    for line in _breakdown(best):
        print("  " + line)
    if args.per_query:
        print()
        for line in _per_query(best, queries):
            print(line)


def _warn_missing(report: EvalReport) -> None:
    missing = report.missing_relevant
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(
            f"crossmodal: warning: {len(missing)} relevant product ids are not in the index "
            f"({shown}): the queries naming them cannot reach full recall",
            file=sys.stderr,
        )


def _print_report(
    report: EvalReport, queries: Sequence[LabelledQuery], args: argparse.Namespace
) -> None:
    setting = report.settings.label
    print(f"{_query_summary(queries)}; setting: {setting} (dimension {report.dimension})")
    if report.excluded_queries:
        print(f"{len(report.excluded_queries)} queries without relevant items are not averaged")
    print(f"cost: {_cost_line(report)}")
    for line in _breakdown(report):
        print(line)
    if args.per_query:
        print()
        for line in _per_query(report, queries):
            print(line)


def _build(args: argparse.Namespace) -> int:
    from crossmodal_search.datasets import load_abo
    from crossmodal_search.evaluation import (
        build_queries_from_catalog,
        read_abo_other_images,
        write_queries,
    )

    if not args.output:
        args._parser.error("--build-from-catalog needs -o/--output QUERIES.jsonl")
    catalog = load_abo(args.build_from_catalog)
    others = read_abo_other_images(args.build_from_catalog)
    queries = build_queries_from_catalog(
        catalog.products, seed=args.seed, other_images=others, max_queries=args.max_queries
    )
    if not queries:
        raise InvalidInputError(f"{args.build_from_catalog}: no product gave a query")
    out = write_queries(queries, args.output)
    kinds = Counter(q.kind for q in queries)
    detail = ", ".join(
        f"{kind} {n}" for kind, n in sorted(kinds.items(), key=lambda kv: str(kv[0]))
    )
    print(f"wrote {len(queries)} queries ({detail}) for {len(catalog.products)} products to {out}")
    print(
        f"index the catalog with `crossmodal index {args.build_from_catalog} --hold-out {out}`:"
        " the held-out photos then stay out of the index"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Build a query set, or evaluate one (a comparison unless ``--no-compare``)."""
    from crossmodal_search.evaluation import hold_out, read_queries

    parser: argparse.ArgumentParser = args._parser
    modes = sum(bool(x) for x in (args.queries, args.build_from_catalog, args.sample))
    if modes != 1:
        parser.error("give QUERIES.jsonl, --sample DIR or --build-from-catalog ABO_ROOT (one)")
    if args.build_from_catalog:
        return _build(args)
    if args.plot and args.no_compare:
        parser.error("--plot draws the comparison sweeps; drop --no-compare")
    out = sys.stderr if args.json else sys.stdout
    store = args.store
    products = None
    if args.sample:
        queries_path, products = _sample(args, out)
        if store == parser.get_default("store"):
            store = "memory:"
    else:
        queries_path = Path(args.queries)
    queries = read_queries(queries_path)
    if products is not None:  # held-out photo queries search with photos the index never saw
        products = hold_out(products, queries)
    searcher, description = make_searcher(
        store=store,
        embedder=args.embedder,
        dimension=args.dimension,
        region=args.region,
        cache=args.cache,
        read_only=products is None,  # evaluating only reads: no write lock needed
        max_concurrency=args.concurrency,
    )
    with searcher:
        print(description, file=out)
        if products is not None:
            _index_sample(searcher, products, out)
        return _evaluate(args, searcher, queries, out)


def _sample(args: argparse.Namespace, out: TextIO) -> tuple[Path, list[Product]]:
    """The sample catalog at ``--sample DIR`` (written if missing) and its labelled queries."""
    from crossmodal_search.datasets import load_abo, write_sample_catalog
    from crossmodal_search.evaluation import write_sample_evaluation

    root = Path(args.sample).expanduser()
    if not (root / "listings").is_dir():
        write_sample_catalog(root)
    files = write_sample_evaluation(root, seed=args.seed)
    info = (
        f"sample catalog at {root}: queries {files.queries}, tag vocabulary "
        f"{files.vocabulary}, gold tags {files.gold_tags}"
    )
    print(info, file=out)
    return files.queries, load_abo(root).products


def _index_sample(searcher: CrossmodalSearcher, products: list[Product], out: TextIO) -> None:
    """Index the sample (products already stored unchanged are skipped, tags kept)."""
    bar = ProgressBar("indexing")
    try:
        ingest = searcher.index(products, progress=bar)
    finally:
        bar.close()
    if ingest.indexed:
        print(f"indexed {ingest.indexed} sample products", file=out)
    else:
        print(f"all {len(products)} sample products already indexed", file=out)


def _evaluate(
    args: argparse.Namespace,
    searcher: CrossmodalSearcher,
    queries: list[LabelledQuery],
    out: TextIO,
) -> int:
    from crossmodal_search.evaluation import EvalSettings, compare, evaluate, plot_comparison

    base = EvalSettings(
        search_mode=args.mode,
        fusion=args.fusion,
        text_weight=args.text_weight,
        hybrid={"auto": None, "on": True, "off": False}[args.hybrid],
        lexical_weight=args.lexical_weight,
    )
    if args.no_compare:
        report = evaluate(
            searcher, queries, k_values=args.k, settings=base, max_concurrency=args.concurrency
        )
        _warn_missing(report)
        if args.json:
            print(report.model_dump_json(indent=2))
        else:
            _print_report(report, queries, args)
        return 0
    comparison = compare(
        searcher,
        queries,
        k_values=args.k,
        base=base,
        text_weights=args.weights,
        dimensions=args.dimensions,
        lexical_weights=args.lexical_weights,
        primary_metric=args.primary,
        max_concurrency=args.concurrency,
    )
    _warn_missing(comparison.best_report)
    if args.json:
        print(comparison.model_dump_json(indent=2))
    else:
        _print_comparison(comparison, queries, args)
    if args.plot:
        path = plot_comparison(comparison, args.plot)
        print(f"plot written to {path}", file=out)
    return 0
