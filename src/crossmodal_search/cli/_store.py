"""``crossmodal store check|recover DIR``: explain and repair a local store directory;
``crossmodal store info|upgrade STORE``: what a store is, and make it full-text searchable."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from crossmodal_search.cli._common import store_options, text_field
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    from crossmodal_search.stores import VectorStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``store`` sub-command and its ``check`` and ``recover`` actions."""
    parser = sub.add_parser(
        "store",
        help="describe, upgrade, check or recover a store",
        description="Maintenance of a store. `info` describes any store (dimension, metric, "
        "index mode, full-text fields); `upgrade` moves an S3 Vectors index to ENHANCED (in "
        "place, no re-ingestion, no charge) and adds full-text fields; `check` verifies a "
        "local:DIR store's segments against their checksums and changes nothing; `recover` "
        "rebuilds a lost or damaged manifest from the sound segments (nothing is deleted: "
        "damaged files are moved aside).",
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
    info = actions.add_parser(
        "info",
        help="describe a store: dimension, metric, index mode, full-text fields",
        description="Describe STORE (local:DIR or s3vectors://BUCKET/INDEX) without changing it.",
    )
    info.add_argument("store", metavar="STORE", help="a store spec")
    info.add_argument("--region", help="AWS region of an S3 Vectors store")
    info.set_defaults(func=_info)
    upgrade = actions.add_parser(
        "upgrade",
        help="make a store full-text searchable (S3 Vectors: move the index to ENHANCED)",
        description="Move an S3 Vectors index to ENHANCED mode (in place: no re-ingestion, no "
        "charge; filters then apply before the search, and full-text search and $startsWith "
        "work), then add the --text-field keys (S3 Vectors indexes what is stored already, "
        "BUILDING until done). A local store is always ENHANCED: only the fields are added. "
        "Needs s3vectors:UpdateIndexMode and s3vectors:UpdateMetadataConfiguration.",
    )
    upgrade.add_argument("store", metavar="STORE", help="a store spec")
    upgrade.add_argument(
        "--text-field",
        dest="text_fields",
        action="append",
        type=text_field,
        default=[],
        metavar="KEY[:LANG]",
        help="a metadata key to make full-text searchable (repeat it); the searcher's keys "
        "are title, text, brand and model_number",
    )
    upgrade.add_argument("--region", help="AWS region of an S3 Vectors store")
    upgrade.set_defaults(func=_upgrade)


def _open(spec: str, region: str | None, *, read_only: bool) -> VectorStore:
    from crossmodal_search.stores import open_store, parse_store_spec

    kind, _, _ = parse_store_spec(spec)
    if kind == "memory":
        raise ConfigurationError("a memory: store holds nothing between commands; name a store")
    options = store_options(kind, region=region, must_exist=True, read_only=read_only)
    return open_store(spec, dimension=None, **options)


def _describe(store: VectorStore) -> list[str]:
    from crossmodal_search.stores import TextSearchStore

    lines = [
        f"dimension: {store.dimension}",
        f"distance metric: {store.distance_metric}",
        "non-filterable keys: " + (", ".join(sorted(store.non_filterable_metadata_keys)) or "-"),
    ]
    if isinstance(store, TextSearchStore):
        lines.append(f"index mode: {store.index_mode}")
        fields = [
            f.key
            + (f" ({f.language})" if f.language else "")
            + (" BUILDING" if f.status == "BUILDING" else "")
            for f in store.text_fields
        ]
        lines.append("full-text fields: " + (", ".join(fields) or "none"))
    return lines


def _info(args: argparse.Namespace) -> int:
    store = _open(args.store, args.region, read_only=True)
    try:
        print(args.store)
        for line in _describe(store):
            print(f"  {line}")
    finally:
        store.close()
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    from crossmodal_search.stores import S3VectorsStore, TextSearchStore

    store = _open(args.store, args.region, read_only=False)
    try:
        if not isinstance(store, TextSearchStore):
            raise ConfigurationError(f"{args.store} has no full-text search to upgrade to")
        if store.index_mode != "ENHANCED":
            assert isinstance(store, S3VectorsStore)  # the one store with a CLASSIC mode
            store.update_index_mode("ENHANCED")
            print(f"{args.store}: moved to ENHANCED (in place; nothing re-ingested)")
        else:
            print(f"{args.store}: already ENHANCED")
        have = {f.key for f in store.text_fields}
        new = [f for f in args.text_fields if f.key not in have]
        if new:
            store.add_text_fields(new)
            print(f"  full-text fields added: {', '.join(f.key for f in new)}")
        for line in _describe(store):
            print(f"  {line}")
    finally:
        store.close()
    return 0


def _check(args: argparse.Namespace) -> int:
    from crossmodal_search.stores import check_local_store

    report = check_local_store(args.directory)
    print(report.summary())
    return 0 if report.ok else 1


def _recover(args: argparse.Namespace) -> int:
    from crossmodal_search.stores import recover_local_store

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
