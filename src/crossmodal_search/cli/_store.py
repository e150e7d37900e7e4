"""``crossmodal store check|recover DIR``: explain and repair a local store directory."""

from __future__ import annotations

import argparse

from crossmodal_search.stores import check_local_store, recover_local_store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``store`` sub-command and its ``check`` and ``recover`` actions."""
    parser = sub.add_parser(
        "store",
        help="check or recover a local store directory",
        description="Maintenance of a local:DIR store. `check` verifies every segment against "
        "its checksums and changes nothing; `recover` rebuilds a lost or damaged manifest from "
        "the sound segments (nothing is deleted: damaged files are moved aside).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check",
        help="verify a store's segments against their checksums (read only)",
        description="Verify every segment of DIR against its checksums and its manifest. Exit "
        "0 when the store is healthy, 1 otherwise. Changes nothing.",
    )
    check.add_argument("directory", metavar="DIR", help="the store directory (local:DIR's DIR)")
    check.set_defaults(func=_check)
    recover = actions.add_parser(
        "recover",
        help="rebuild a store's manifest from its sound segments",
        description="Rebuild DIR's manifest.json from its segments: the newest complete base "
        "and every sound segment after it. A damaged segment stops the recovery unless "
        "--drop-damaged is given; its files are then renamed damaged-seg-... (never deleted) "
        "and the keys whose latest write it held are listed. Takes the write lock.",
    )
    recover.add_argument("directory", metavar="DIR", help="the store directory")
    recover.add_argument(
        "--drop-damaged",
        action="store_true",
        help="set damaged segments aside and recover without their writes",
    )
    recover.add_argument(
        "--distance-metric",
        choices=("cosine", "euclidean"),
        help="only for stores written by versions before 0.2 whose manifest is lost",
    )
    recover.add_argument(
        "--non-filterable",
        nargs="+",
        metavar="KEY",
        help="likewise: the store's non-filterable metadata keys, if not the default",
    )
    recover.set_defaults(func=_recover)


def _check(args: argparse.Namespace) -> int:
    report = check_local_store(args.directory)
    print(report.summary())
    return 0 if report.ok else 1


def _recover(args: argparse.Namespace) -> int:
    report = recover_local_store(
        args.directory,
        drop_damaged=args.drop_damaged,
        distance_metric=args.distance_metric,
        non_filterable_metadata_keys=args.non_filterable,
    )
    if not report.changed:
        print(f"{report.path} is healthy ({report.vectors} vectors): nothing to recover")
        return 0
    print(f"recovered {report.path}: {report.vectors} vectors in {len(report.segments)} segments")
    for moved in report.set_aside:
        print(f"  set aside {moved} (delete it once you no longer need it)")
    if report.lost_keys:
        shown = ", ".join(report.lost_keys[:20])
        more = f" and {len(report.lost_keys) - 20} more" if len(report.lost_keys) > 20 else ""
        print(f"  the latest write of {len(report.lost_keys)} keys is lost: {shown}{more}")
    return 0
