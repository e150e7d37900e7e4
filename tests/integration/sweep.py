"""Remove what interrupted live-suite runs left in an AWS account.

    python -m tests.integration.sweep [--older-than-minutes 60] [--region us-east-1] [--dry-run]

Only buckets named ``cmx-live-...`` *and* tagged ``crossmodal-live-test`` that are older than the
given age are deleted (with their indexes and objects); everything else found under the prefix is
listed and left alone. ``make integration-sweep`` runs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tests.integration.lifecycle import NAME_PREFIX, TAG_KEY, sweep

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3vectors import S3VectorsClient


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.sweep",
        description=f"Delete leftover live-suite buckets ({NAME_PREFIX}*, tagged {TAG_KEY}).",
    )
    parser.add_argument(
        "--older-than-minutes",
        type=float,
        default=60.0,
        help="only buckets created longer ago than this (default: %(default)s)",
    )
    parser.add_argument("--region", help="AWS region (default: the environment's)")
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    clients: tuple[S3VectorsClient, S3Client] | None = None,
) -> int:
    """Run the sweeper; ``clients`` replaces the boto3 clients it would build (for tests)."""
    args = build_parser().parse_args(argv)
    if clients is None:
        import boto3

        session = boto3.Session(region_name=args.region)
        if session.get_credentials() is None:
            print("sweep: no AWS credentials found; nothing to do", file=sys.stderr)
            return 2
        region: str | None = session.region_name
        if region is None:
            print("sweep: no region: pass --region or set AWS_REGION", file=sys.stderr)
            return 2
        s3vectors: Any = session.client("s3vectors")
        s3: Any = session.client("s3")
    else:
        s3vectors, s3 = clients
        region = args.region or s3vectors.meta.region_name
    leftovers, report = sweep(
        s3vectors,
        s3,
        older_than=timedelta(minutes=args.older_than_minutes),
        region=region,
        dry_run=args.dry_run,
    )
    for item in leftovers:
        action = ("would delete" if args.dry_run else "deleting") if item.removable else "keeping"
        print(f"{action} {item.kind} {item.name}: {item.reason}")
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    removed = sum(1 for item in leftovers if item.removable)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {removed} leftover bucket(s) in {region}; {len(report.deleted)} resources deleted"
    )
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
