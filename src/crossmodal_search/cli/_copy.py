"""``crossmodal copy``: copy an index between stores (local <-> S3 Vectors) without re-embedding."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from crossmodal_search.cli._common import bounded_int, store_options
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    from crossmodal_search.stores import (
        CopyReport,
        VectorStore,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``copy`` sub-command."""
    parser = sub.add_parser(
        "copy",
        help="copy an index into another store (local <-> S3 Vectors)",
        description="Copy every vector, key and metadata of SOURCE into TARGET, e.g. a local "
        "index up to S3 Vectors for production, or an S3 Vectors index down to a local store "
        "for offline work. Nothing is re-embedded. TARGET is created with SOURCE's dimension, "
        "distance metric and non-filterable keys when it does not exist. Running the same "
        "copy again resumes it: records already in TARGET unchanged are not written again.",
    )
    parser.add_argument("source", metavar="SOURCE", help="local:DIR or s3vectors://BUCKET/INDEX")
    parser.add_argument("target", metavar="TARGET", help="local:DIR or s3vectors://BUCKET/INDEX")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also delete TARGET records whose keys are not in SOURCE (mirror it)",
    )
    parser.add_argument(
        "--rewrite",
        action="store_true",
        help="write every record, without first reading TARGET's copy to skip unchanged ones",
    )
    parser.add_argument(
        "--batch-size",
        type=bounded_int(1, 10_000),
        default=500,
        help="records per read/compare/write step (default: %(default)s)",
    )
    parser.add_argument(
        "--region", default=None, help="AWS region for S3 Vectors (default: boto3's)"
    )
    parser.set_defaults(func=run)


def _open(spec: str, region: str | None, *, like: VectorStore | None) -> VectorStore:
    from crossmodal_search.stores import open_store, parse_store_spec

    kind, _, _ = parse_store_spec(spec)
    if like is None:  # the source: it must exist, and is only read
        if kind == "memory":
            raise ConfigurationError(
                "SOURCE must be a local:DIR or s3vectors:// store, not memory:"
            )
        options = store_options(kind, region=region, read_only=True)
        return open_store(spec, dimension=None, **options)
    options = store_options(kind, region=region)
    options["distance_metric"] = like.distance_metric
    options["non_filterable_metadata_keys"] = like.non_filterable_metadata_keys
    return open_store(spec, dimension=like.dimension, **options)


def run(args: argparse.Namespace) -> int:
    """Copy SOURCE into TARGET and print the totals."""
    from crossmodal_search.stores import copy_store

    if args.source == args.target:
        raise ConfigurationError("SOURCE and TARGET are the same store")
    source = _open(args.source, args.region, like=None)
    target = _open(args.target, args.region, like=source)
    shown = False

    def progress(report: CopyReport) -> None:
        nonlocal shown
        if sys.stderr.isatty():
            sys.stderr.write(f"\rcopying: {report.read} read, {report.written} written")
            sys.stderr.flush()
            shown = True

    try:
        report = copy_store(
            source,
            target,
            batch_size=args.batch_size,
            skip_unchanged=not args.rewrite,
            prune=args.prune,
            progress=progress,
        )
    finally:
        if shown:
            sys.stderr.write("\n")
        for store in (source, target):
            close = getattr(store, "close", None)
            if close is not None:
                close()
    print(
        f"copied {args.source} -> {args.target}: {report.read} records read, "
        f"{report.written} written, {report.unchanged} already there unchanged"
        + (f", {report.deleted} deleted" if args.prune else "")
        + (
            f"; full-text fields added: {', '.join(report.text_fields_added)}"
            if report.text_fields_added
            else ""
        )
    )
    return 0
