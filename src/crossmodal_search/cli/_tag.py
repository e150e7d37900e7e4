"""``crossmodal tag``: zero-shot tags from a vocabulary, written back as filterable metadata."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_search.cli._common import (
    add_embedder_args,
    add_store_args,
    as_float,
    open_searcher,
)
from crossmodal_search.errors import InvalidInputError

if TYPE_CHECKING:
    from crossmodal_search.evaluation import TagQuality
    from crossmodal_search.search import TaggingReport


def _threshold(value: str) -> float:
    t = as_float(value)
    if not -1.0 <= t <= 1.0:
        raise argparse.ArgumentTypeError(f"a cosine similarity is in [-1, 1], got {value}")
    return t


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tag`` sub-command."""
    parser = sub.add_parser(
        "tag",
        help="tag indexed products zero-shot from a vocabulary (filterable metadata)",
        description="Embed the labels of a vocabulary (JSON or YAML: a list of labels, "
        "{group: [labels]}, or {template: ..., groups: {...}}) with purpose CLASSIFICATION, "
        "score every indexed product's stored vector against them (no re-embedding) and "
        "write the chosen labels back to all its vectors as metadata 'tags' (and "
        "'tag_<group>'), so that `crossmodal search --filter '{\"tags\": \"red\"}'` works.",
    )
    parser.add_argument(
        "--vocab", required=True, metavar="FILE", help="tags.json or tags.yaml (yaml extra)"
    )
    parser.add_argument(
        "--template",
        metavar="TEXT",
        help="how a label is phrased for embedding, with {label} (overrides the file's; "
        "default: 'a photo of a {label} product')",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        help="keep labels with cosine similarity >= this (default: best label per group)",
    )
    parser.add_argument(
        "--top1-per-group",
        action="store_true",
        help="keep only the best label of each group (default when no --threshold)",
    )
    parser.add_argument(
        "--source",
        choices=("auto", "combined", "image", "text"),
        default="auto",
        help="stored vector scored: auto (combined, else image, else text; default)",
    )
    parser.add_argument(
        "--gold",
        metavar="FILE",
        help="known labels, JSON {product_id: [labels]}: print precision/recall per tag",
    )
    parser.add_argument("--dry-run", action="store_true", help="compute tags, write nothing")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--show", type=int, default=20, metavar="N", help="products listed (default: 20; 0: all)"
    )
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run)


def _read_gold(path: str) -> dict[str, list[str]]:
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"gold file not found: {file}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{file}: expected an object {{product_id: [labels]}}")
    gold: dict[str, list[str]] = {}
    for pid, labels in data.items():
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise InvalidInputError(f"{file}: labels of {pid!r} must be a list of strings")
        gold[pid] = labels
    return gold


def _print_tags(report: TaggingReport, show: int) -> None:
    listed = report.products if show <= 0 else report.products[:show]
    width = max([7, *(len(p.product_id) for p in listed)])
    print(f"{'product':<{width}}  {'source':<8}  tags")
    for p in listed:
        groups = "  ".join(f"{g}={'/'.join(v) or '-'}" for g, v in p.by_group.items())
        print(f"{p.product_id:<{width}}  {p.source:<8}  {groups}")
    if len(listed) < len(report.products):
        print(f"... and {len(report.products) - len(listed)} more (--show 0 lists all)")


def _print_quality(quality: TagQuality) -> None:
    print(f"tag quality on {quality.products} labelled products:")
    print(f"  {'tag':<20} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8} {'predicted':>9}")
    for tag, s in sorted(quality.per_tag.items()):
        print(
            f"  {tag:<20} {s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f} "
            f"{s.support:>8} {s.predicted:>9}"
        )
    print(
        f"  micro: precision {quality.micro_precision:.3f}, recall {quality.micro_recall:.3f}, "
        f"f1 {quality.micro_f1:.3f}; macro: precision {quality.macro_precision:.3f}, "
        f"recall {quality.macro_recall:.3f}, f1 {quality.macro_f1:.3f}"
    )


def run(args: argparse.Namespace) -> int:
    """Tag the products of ``--store`` and print what was written."""
    from pydantic import ValidationError

    from crossmodal_search.evaluation import evaluate_tags
    from crossmodal_search.search import TagVocabulary, load_vocabulary, tag_products

    vocabulary = load_vocabulary(args.vocab)
    if args.template is not None:
        try:
            vocabulary = TagVocabulary.model_validate(
                {**vocabulary.model_dump(), "template": args.template}
            )
        except ValidationError as exc:
            raise InvalidInputError(f"--template: {exc.errors()[0]['msg']}") from None
    gold = _read_gold(args.gold) if args.gold else None
    top1 = args.top1_per_group or args.threshold is None
    # A dry run only reads: it must not wait for (or block) a writer of a local store.
    searcher, description = open_searcher(args, must_exist=True, read_only=args.dry_run)
    out = sys.stderr if args.json else sys.stdout
    with searcher:
        print(description, file=out)
        report = tag_products(
            searcher.store,
            searcher.embedder,
            vocabulary,
            threshold=args.threshold,
            top1_per_group=top1,
            source=args.source,
            dry_run=args.dry_run,
        )
    quality = evaluate_tags(report.predicted(), gold) if gold is not None else None
    if args.json:
        payload = {"tagging": report.model_dump(), "quality": quality and quality.model_dump()}
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return 0
    _print_tags(report, args.show)
    written = "nothing written (dry run)" if args.dry_run else f"{report.vectors_updated} vectors"
    print(
        f"tagged {len(report.products)} products with {report.label_embed_calls} label "
        f"embeddings; {written}"
    )
    if report.skipped:
        print(f"skipped (no stored vector of the requested type): {', '.join(report.skipped)}")
    if quality is not None:
        _print_quality(quality)
    if not args.dry_run and report.products:
        example = next((p.tags[0] for p in report.products if p.tags), None)
        if example is not None:
            flt = shlex.quote(json.dumps({"tags": example}))
            store = shlex.quote(args.store)
            print(f"filter by tag: crossmodal search --store {store} --filter {flt} ...")
    return 0
