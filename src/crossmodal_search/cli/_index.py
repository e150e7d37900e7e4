"""``crossmodal index``: embed a catalog (ABO directory or products.jsonl) into a store.

``--batch`` embeds through Amazon Bedrock batch inference instead of one call per text and
image (about half the price, for catalogs of thousands of products); ``--media-s3-uri``
also indexes products' videos, audio and documents per segment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_search._constants import LANGUAGES
from crossmodal_search.cli._catalog import add_catalog_args, load_catalog
from crossmodal_search.cli._common import (
    ProgressBar,
    add_embedder_args,
    add_store_args,
    bounded_int,
    make_searcher,
    open_searcher,
    positive_float,
    positive_int,
    text_field,
)
from crossmodal_search.errors import ConfigurationError, InvalidInputError, ResourceNotFoundError

if TYPE_CHECKING:
    from crossmodal_search.search import (
        CrossmodalSearcher,
        IngestReport,
        Product,
    )
    from crossmodal_search.stores import TextField

if TYPE_CHECKING:
    import boto3

    from crossmodal_search.embeddings import BatchEmbeddingJobs, SegmentedEmbeddingJobs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``index`` sub-command."""
    parser = sub.add_parser(
        "index",
        help="embed a catalog into a store (resumable: a rerun skips what is already indexed)",
        description="Embed a catalog into a store. CATALOG is an Amazon Berkeley Objects "
        "directory (listings/metadata/listings_*.json.gz + images/metadata/images.csv.gz) or a "
        "JSON-lines file of products ({product_id, text, image, metadata} per line). Reruns "
        "skip products whose content is already indexed and re-embed changed ones.",
    )
    parser.add_argument("catalog", metavar="CATALOG", help="ABO directory or products.jsonl")
    parser.add_argument("--limit", type=positive_int, help="index at most N products")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report the embedding calls, vectors and bytes it would take; change nothing",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="CATALOG is complete: delete from the store every product not in it (all its "
        "vectors, segments included); not with --limit",
    )
    parser.add_argument(
        "--non-filterable",
        nargs="+",
        default=[],
        metavar="KEY",
        help="metadata keys to store but not filter on (long ones: they escape the 2 KB "
        "filterable limit), besides text, description, image_path and source_uri; fixed when "
        "the store is created",
    )
    words = parser.add_argument_group(
        "full-text search",
        "Indexing makes products' words searchable for hybrid search (no extra embedding "
        "call): by default title, text (the description), brand and model_number, with the "
        "standard analyzer. On an S3 Vectors index this needs ENHANCED mode.",
    )
    words.add_argument(
        "--text-field",
        dest="text_fields",
        action="append",
        type=text_field,
        metavar="KEY[:LANG]",
        help="a metadata key to make full-text searchable, with an analyzer language ("
        + ",".join(LANGUAGES)
        + "; stemming and stop words); repeat it; replaces the default keys",
    )
    words.add_argument(
        "--text-language",
        choices=LANGUAGES,
        metavar="LANG",
        help="analyzer language of the default keys (e.g. en: 'dresses' finds 'dress')",
    )
    words.add_argument(
        "--no-text-fields",
        action="store_true",
        help="make no key full-text searchable (vector search only)",
    )
    parser.add_argument(
        "--report",
        metavar="PATH",
        help="also write the run's report as JSON: counts, each failure with its AWS error code "
        "and request id, and retry_ids (the products a rerun may index)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=32,
        help="most embedding calls in flight (adaptive: halved on throttling, regrown on success)",
    )
    add_catalog_args(parser)
    _add_batch_args(parser)
    _add_media_args(parser)
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run, _parser=parser)


def _add_batch_args(parser: argparse.ArgumentParser) -> None:
    batch = parser.add_argument_group(
        "batch inference",
        "Embed through Amazon Bedrock batch inference (Nova only): the texts and images to embed "
        "are written as JSONL to S3, one job per 50,000 records, and the results written to the "
        "store as by a normal run. Rerunning resumes a submitted job instead of paying twice. "
        "Fewer than 100 records are embedded synchronously.",
    )
    batch.add_argument("--batch", action="store_true", help="use batch inference")
    batch.add_argument(
        "--batch-role-arn",
        metavar="ARN",
        help="IAM service role Bedrock assumes to read and write --batch-s3-uri",
    )
    batch.add_argument(
        "--batch-s3-uri",
        metavar="S3_URI",
        help="S3 prefix for batch inputs, outputs and job manifests, e.g. s3://bucket/batch/",
    )
    batch.add_argument(
        "--batch-poll-interval",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="first wait between job status checks; doubles up to 10 minutes (default: 30)",
    )
    batch.add_argument(
        "--batch-timeout",
        type=positive_float,
        default=24.0,
        metavar="HOURS",
        help="stop waiting after this long; the job keeps running and a rerun resumes it "
        "(default: 24)",
    )


def _add_media_args(parser: argparse.ArgumentParser) -> None:
    media = parser.add_argument_group(
        "long media",
        "Products' video, audio and document fields (products.jsonl) are indexed per segment "
        "after the text and images, so `crossmodal search --mode video|audio|document` finds the "
        "product and the time range or page. Local PDF documents are always indexed (pages as "
        "document images). Video, audio and text documents in S3 are segmented by Nova "
        "asynchronous jobs and only with --media-s3-uri.",
    )
    media.add_argument(
        "--media-s3-uri",
        metavar="S3_URI",
        help="S3 prefix where Nova writes segment embeddings, e.g. s3://bucket/embeddings/",
    )
    media.add_argument(
        "--segment-seconds",
        type=bounded_int(1, 30),
        default=5,
        help="seconds per video/audio segment, 1-30 (default: %(default)s)",
    )
    media.add_argument(
        "--segment-chars",
        type=bounded_int(800, 50_000),
        default=32_000,
        help="characters per text-document segment, 800-50000 (default: %(default)s)",
    )
    media.add_argument(
        "--media-poll-interval",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="first wait between job status checks; doubles up to a minute (default: 5)",
    )


def _print_failures(report: IngestReport) -> None:
    for failure in report.failed:
        aws = f" [request id {failure.request_id}]" if failure.request_id else ""
        print(
            f"  failed {failure.product_id} ({failure.kind}): {failure.reason}{aws}",
            file=sys.stderr,
        )


def _write_report(path: str | None, report: IngestReport) -> None:
    """``--report PATH``: the run's report as JSON (failures with codes, request ids and
    ``retry_ids``), for scripts and support cases."""
    if path is None:
        return
    Path(path).expanduser().write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    print(f"report written to {path}")


def _print_report(report: IngestReport) -> None:
    print(
        f"indexed {report.indexed} products, {report.skipped_unchanged} unchanged, "
        f"{len(report.failed)} failed; {report.vectors_written} vectors written, "
        f"{report.vectors_deleted} stale vectors deleted, {report.embed_calls} embedding calls "
        f"in {report.seconds:.1f} s"
    )
    if report.pruned:
        print(f"pruned {report.pruned} products no longer in the catalog")
    _print_failures(report)


def _text_fields(args: argparse.Namespace) -> list[TextField] | None:
    """The full-text fields asked for on the command line (None: the searcher's defaults)."""
    from crossmodal_search.search import DEFAULT_TEXT_FIELDS
    from crossmodal_search.stores import TextField

    if args.no_text_fields:
        if args.text_fields or args.text_language:
            args._parser.error("--no-text-fields excludes --text-field and --text-language")
        return []
    if args.text_fields:
        if args.text_language:
            args._parser.error("give languages per key (--text-field KEY:LANG) with --text-field")
        return list(args.text_fields)
    if args.text_language:
        return [TextField(f.key, args.text_language) for f in DEFAULT_TEXT_FIELDS]
    return None


def _open_for_estimate(args: argparse.Namespace) -> tuple[CrossmodalSearcher, str]:
    """The target store read-only when it exists, else an empty in-memory one: never create."""
    from crossmodal_search.stores import parse_store_spec

    kind, location, _ = parse_store_spec(args.store)
    if not (kind == "local" and location is not None and not Path(location).is_dir()):
        try:
            return open_searcher(args, read_only=True)
        except ResourceNotFoundError:
            pass
    searcher, description = make_searcher(
        store="memory:",
        embedder=args.embedder,
        dimension=args.dimension,
        region=args.region,
        cache=args.cache,
        non_filterable=args.non_filterable,
        max_images=args.max_images,
        main_image_only=args.main_image_only,
    )
    embedder_line = description.splitlines()[0]
    return (
        searcher,
        f"{embedder_line}\nstore: {args.store} does not exist yet: every product is new",
    )


def _dry_run(args: argparse.Namespace, products: list[Product], summary: str) -> int:
    searcher, description = _open_for_estimate(args)
    with searcher:
        print(description)
        print(summary)
        report = searcher.index(products, dry_run=True, prune=args.prune)
    assert report.estimate is not None
    est = report.estimate
    counts = {k: sum(getattr(p, k) is not None for p in products) for k in _MEDIA}
    if any(counts.values()):
        print(
            "long media (indexed per segment after the products, not estimated): "
            + ", ".join(f"{n} {kind}" for kind, n in counts.items())
        )
    print(
        f"dry run: {est.to_embed} products to embed, {est.unchanged} unchanged, "
        f"{est.metadata_only} metadata-only updates, {est.invalid} invalid\n"
        f"  embedding calls: {est.embed_calls} ({est.text_calls} text, "
        f"{est.image_calls} image), image bytes sent: {est.image_bytes:,}\n"
        f"  vectors to write: {est.vectors} in {est.put_requests} write requests "
        f"({est.vector_bytes:,} vector bytes, {est.metadata_bytes:,} metadata bytes); "
        f"stale vectors to delete: {est.stale_vectors}"
    )
    if args.prune:
        print(f"would prune {report.pruned} products no longer in the catalog")
    return 0


def _check_batch_args(args: argparse.Namespace) -> None:
    """Usage errors of the batch and media options, before anything is read or built."""
    given = [
        flag
        for flag, value in (
            ("--batch-role-arn", args.batch_role_arn),
            ("--batch-s3-uri", args.batch_s3_uri),
        )
        if value is not None
    ]
    if not args.batch and given:
        args._parser.error(f"{' and '.join(given)} only apply with --batch")
    if args.prune and args.limit is not None:
        args._parser.error(
            "--prune deletes every product not in the catalog, and --limit reads only part of "
            "it: drop one of them"
        )
    if args.batch:
        missing = [
            flag
            for flag in ("--batch-role-arn", "--batch-s3-uri")
            if getattr(args, flag[2:].replace("-", "_")) is None
        ]
        if missing:
            args._parser.error(f"--batch needs {' and '.join(missing)}")
    for flag, wanted in (("--batch", args.batch), ("--media-s3-uri", args.media_s3_uri)):
        if wanted and args.embedder == "offline":
            args._parser.error(
                f"{flag} runs Amazon Nova jobs on Bedrock; it cannot use the offline embedder "
                f"(drop {flag}, or use --embedder nova)"
            )


def _aws_session(args: argparse.Namespace, what: str) -> boto3.Session:
    """boto3's default session (as ``boto3.client`` uses), or a new one; must have credentials."""
    import boto3

    session = boto3.DEFAULT_SESSION or boto3.Session(region_name=args.region)
    if session.get_credentials() is None:
        raise ConfigurationError(
            f"{what} runs on Amazon Bedrock and boto3 found no AWS credentials (set AWS_PROFILE "
            "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    return session


def _batch_jobs(args: argparse.Namespace, session: boto3.Session) -> BatchEmbeddingJobs:
    from crossmodal_search._aws import build_client
    from crossmodal_search.embeddings import BatchEmbeddingJobs

    return BatchEmbeddingJobs(
        build_client("bedrock", session=session, region_name=args.region),
        build_client("s3", session=session, region_name=args.region),
        role_arn=args.batch_role_arn,
        work_s3_uri=args.batch_s3_uri,
        poll_interval=args.batch_poll_interval,
        max_poll_interval=max(600.0, args.batch_poll_interval),
        timeout=args.batch_timeout * 3600.0,
    )


def _media_jobs(args: argparse.Namespace, session: boto3.Session) -> SegmentedEmbeddingJobs:
    from crossmodal_search._aws import build_client
    from crossmodal_search.embeddings import SegmentedEmbeddingJobs, check_s3_uri

    try:
        check_s3_uri(args.media_s3_uri, what="--media-s3-uri")
    except InvalidInputError as exc:
        raise ConfigurationError(str(exc)) from None
    return SegmentedEmbeddingJobs(
        build_client("bedrock-runtime", session=session, region_name=args.region),
        build_client("s3", session=session, region_name=args.region),
        dimension=args.dimension,
        poll_interval=args.media_poll_interval,
        max_poll_interval=max(60.0, args.media_poll_interval),
    )


_MEDIA = ("video", "audio", "document")


def _is_s3(value: str | None) -> bool:
    return value is not None and value.startswith("s3://")


def _media_products(products: list[Product], *, with_s3: bool) -> tuple[list[Product], int]:
    """Products whose media this run indexes (S3 sources only ``with_s3``), and how many S3
    sources are left out."""
    chosen: list[Product] = []
    left_out = 0
    for p in products:
        sources = {"video": p.video, "audio": p.audio, "document": p.document}
        if not with_s3:
            in_s3 = [k for k, v in sources.items() if _is_s3(v)]
            left_out += len(in_s3)
            sources.update(dict.fromkeys(in_s3))
        if any(v is not None for v in sources.values()):
            chosen.append(p.model_copy(update=sources))
    return chosen, left_out


def _print_media_report(report: IngestReport) -> None:
    print(
        f"long media: {report.indexed} sources indexed, {report.skipped_unchanged} unchanged, "
        f"{len(report.failed)} failures; {report.vectors_written} segment vectors written, "
        f"{report.vectors_deleted} stale segments deleted, {len(report.jobs)} async jobs "
        f"in {report.seconds:.1f} s"
    )
    _print_failures(report)


def _index(
    args: argparse.Namespace, products: list[Product], summary: str
) -> tuple[IngestReport, IngestReport | None]:
    media, left_out = _media_products(products, with_s3=args.media_s3_uri is not None)
    session = None
    batch_jobs = media_jobs = None
    if args.batch or args.media_s3_uri is not None:
        session = _aws_session(args, "--batch" if args.batch else "--media-s3-uri")
        # Both constructors check their settings (role ARN, S3 URIs) and make no call.
        batch_jobs = _batch_jobs(args, session) if args.batch else None
        media_jobs = _media_jobs(args, session) if args.media_s3_uri is not None else None
    searcher, description = make_searcher(
        store=args.store,
        embedder=args.embedder,
        dimension=args.dimension,
        region=args.region,
        cache=args.cache,
        max_concurrency=args.concurrency,
        session=session,
        non_filterable=args.non_filterable,
        text_fields=_text_fields(args),
        max_images=args.max_images,
        main_image_only=args.main_image_only,
    )
    with searcher:
        for flag, model_id in (
            ("--batch", batch_jobs.model_id if batch_jobs else None),
            ("--media-s3-uri", media_jobs.model_id if media_jobs else None),
        ):
            if model_id is not None and searcher.embedder.model_id != model_id:
                raise ConfigurationError(
                    f"{flag} embeds with {model_id} but the embedder is "
                    f"{searcher.embedder.model_id}; use --embedder nova"
                )
        print(description)
        print(summary)
        if batch_jobs is not None:
            print(
                f"batch inference: role {batch_jobs.role_arn}, "
                f"work prefix {batch_jobs.work_s3_uri}/"
            )
        report = _index_products(args, searcher, products, batch_jobs)
        for arn in report.jobs:
            print(f"batch job: {arn}")
        media_report = None
        if media:
            media_bar = ProgressBar("long media")
            try:
                media_report = searcher.index_media(
                    media,
                    jobs=media_jobs,
                    output_s3_uri=args.media_s3_uri,
                    segment_seconds=args.segment_seconds,
                    max_length_chars=args.segment_chars,
                    progress=media_bar,
                )
            finally:
                media_bar.close()
    if left_out:
        print(
            f"long media: {left_out} video/audio/document sources in S3 not indexed; "
            "pass --media-s3-uri to segment them with Nova"
        )
    return report, media_report


def _index_products(
    args: argparse.Namespace,
    searcher: CrossmodalSearcher,
    products: list[Product],
    batch_jobs: BatchEmbeddingJobs | None,
) -> IngestReport:
    """Index the products (through batch inference with ``batch_jobs``) with a progress bar;
    on a stop or an interrupt, say what was saved and that a rerun resumes."""
    from crossmodal_search.search import IngestStoppedError, index_with_batch

    bar = ProgressBar("indexing")
    try:
        if batch_jobs is None:
            return searcher.index(products, progress=bar, prune=args.prune)
        report = index_with_batch(searcher, products, jobs=batch_jobs, progress=bar)
        if not args.prune:
            return report
        removed = searcher.prune(p.product_id for p in products)
        return report.model_copy(
            update={
                "pruned": removed.pruned,
                "vectors_deleted": report.vectors_deleted + removed.vectors_deleted,
            }
        )
    except IngestStoppedError as exc:
        bar.close()
        _print_report(exc.report)
        _write_report(args.report, exc.report)
        raise
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted after {bar.done} of {bar.total or len(products)} products: every "
            "product finished before the interrupt is written; rerun the same command to "
            "resume (indexed products are skipped)",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()


def _products(n: int) -> str:
    return f"{n} product" if n == 1 else f"{n} products"


def run(args: argparse.Namespace) -> int:
    """Load, then index (or estimate); exit 1 when some products or media failed."""
    _check_batch_args(args)
    products, summary = load_catalog(args)
    if args.dry_run:
        return _dry_run(args, products, summary)
    report, media_report = _index(args, products, summary)
    _print_report(report)
    if media_report is not None:
        _print_media_report(media_report)
    _write_report(args.report, report)
    problems = []
    retry = len(report.retry_ids)
    if len(report.failed) > retry:
        problems.append(f"{_products(len(report.failed) - retry)} must be fixed")
    if retry:
        problems.append(f"{_products(retry)} met service errors a rerun may get past")
    if media_report is not None and media_report.failed:
        sources = {(f.product_id, f.kind) for f in media_report.failed}
        noun = "media source was" if len(sources) == 1 else "media sources were"
        problems.append(f"{len(sources)} {noun} not fully indexed")
    if problems:
        print(
            f"crossmodal: {' and '.join(problems)} (listed above); rerun when fixed: what is "
            "indexed is skipped",
            file=sys.stderr,
        )
        return 1
    return 0
