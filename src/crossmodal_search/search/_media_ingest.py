"""Ingestion of products' long media (video, audio, documents) into a vector store.

:func:`index_media` orchestrates the embedding layer (:class:`SegmentedEmbeddingJobs` for media in
S3, ``embed_pdf`` / ``embed_text_document`` for local documents) and writes one record per
segment to a :class:`~crossmodal_search.stores.VectorStore`. It lives in the search layer
because it drives a store; :meth:`CrossmodalSearcher.index_media` builds its items from
products.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from crossmodal_search._aws import join_s3
from crossmodal_search._types import MetadataValue
from crossmodal_search.embeddings import (
    SegmentedEmbeddingJobs,
    SegmentedJob,
    VideoEmbeddingMode,
    embed_text_document,
)
from crossmodal_search.embeddings._segments import (
    SYNC_TEXT_LIMIT_CHARS,
    SegmentationConfig,
    SegmentedResult,
    check_s3_uri,
    embed_pdf,
    segment_records,
)
from crossmodal_search.errors import (
    EmbeddingJobError,
    InvalidInputError,
    ResourceNotFoundError,
    ServiceError,
    UnsupportedMediaError,
)

if TYPE_CHECKING:
    from crossmodal_search.embeddings._protocol import Embedder
    from crossmodal_search.stores._protocol import VectorStore

logger = logging.getLogger(__name__)

__all__ = [
    "MediaFailure",
    "MediaIngestReport",
    "MediaItem",
    "first_stored_segment",
    "index_media",
]

# --- product media -> store -----------------------------------------------------------------

MediaKind: TypeAlias = Literal["video", "audio", "document"]


@dataclass(frozen=True)
class MediaItem:
    """One long media source of a product.

    ``source`` is an ``s3://`` URI for video and audio (Nova reads it); for a document, a local
    PDF or UTF-8 text file, or the ``s3://`` URI of plain text. ``metadata`` is stored on every
    segment (for example the product's ``text`` and ``image_path`` so a hit can be displayed).
    """

    product_id: str
    kind: MediaKind
    source: str
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True)
class MediaFailure:
    """A product media source (or some of its segments) that is not fully indexed."""

    product_id: str
    kind: MediaKind
    source: str
    reason: str


@dataclass
class MediaIngestReport:
    """Outcome of :func:`index_media` (same spirit as the searcher's ``IngestReport``).

    ``embed_calls`` counts asynchronous jobs started plus PDF pages embedded synchronously;
    ``vectors_deleted`` the segments of an earlier run that this run replaced.
    """

    indexed: int = 0
    skipped_unchanged: int = 0
    failed: list[MediaFailure] = field(default_factory=list)
    vectors_written: int = 0
    vectors_deleted: int = 0
    embed_calls: int = 0
    jobs: list[str] = field(default_factory=list)


def _settings_tag(item: MediaItem, seconds: int, chars: int, dpi: int) -> str:
    if item.kind == "document" and not item.source.startswith("s3://"):
        return f"pdf:{dpi}dpi"
    return f"{chars}chars" if item.kind == "document" else f"{seconds}s"


def index_media(
    store: VectorStore,
    items: Iterable[MediaItem],
    *,
    jobs: SegmentedEmbeddingJobs | None = None,
    embedder: Embedder | None = None,
    output_s3_uri: str | None = None,
    segment_seconds: int = 5,
    max_length_chars: int = 32_000,
    embedding_mode: VideoEmbeddingMode = "AUDIO_VIDEO_COMBINED",
    dpi: int = 150,
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MediaIngestReport:
    """Embed products' videos, audio and documents per segment and write them to ``store``.

    Video and audio (and plain-text documents in S3) go through Nova's asynchronous
    segmentation: every job is started first, then each is awaited. Local PDF documents are
    rendered and embedded page by page with ``embedder.embed_document``; local text documents
    up to :data:`SYNC_TEXT_LIMIT_CHARS` are one ``embedder.embed_text`` segment, longer ones are
    uploaded under ``<output_s3_uri>/crossmodal-staging/`` and segmented like text in S3 (their
    ``source_uri`` stays the local file's). Each segment becomes a record
    from :func:`~crossmodal_search.embeddings._segments.segment_records` (keys like
    ``video-{product_id}-{index}``, metadata ``type``, ``product_id``, ``segment_start``,
    ``segment_end``, ``segment_unit``, ``source_uri``, ``segment_config``, ``embedding_model``,
    ``segment_count``). Segments of an earlier run that this run did not rewrite are deleted.

    Every job started is recorded under ``<output_s3_uri>/crossmodal-jobs/`` by source and
    settings, so a rerun after a timeout or an interruption waits for the job already running
    (or reads the one already completed, when only the product metadata changed) instead of
    paying for a new one; a job that ``Failed`` or had failed segments is started again.

    A source whose first segment is already stored with the same ``source_uri``,
    ``segment_config``, ``embedding_model`` and ``metadata`` values is skipped (reruns
    resume; changed product metadata re-indexes the source). Failed segments and
    failed jobs are reported per product in ``failed``; the good segments of a partly failed
    source are still written. ``progress(done, total)`` is called each time a source is
    finished (skipped, written or failed): PDFs and short local text as they are embedded,
    asynchronous jobs as each is awaited.

    Raises:
        InvalidInputError: bad settings, duplicate ``(product_id, kind)`` items, or a source
            of the wrong kind (before any call).
    """
    SegmentationConfig(max_length_chars=max_length_chars, segment_seconds=segment_seconds)
    todo = list(items)
    seen: set[tuple[str, str]] = set()
    for item in todo:
        if not isinstance(item, MediaItem) or item.kind not in ("video", "audio", "document"):
            raise InvalidInputError(f"not a MediaItem with kind video/audio/document: {item!r}")
        if (item.product_id, item.kind) in seen:
            raise InvalidInputError(f"{item.product_id}: two {item.kind} sources")
        seen.add((item.product_id, item.kind))
        needs_async = item.kind != "document" or item.source.startswith("s3://")
        if needs_async:
            check_s3_uri(item.source, what=f"{item.product_id} {item.kind} source")
            if jobs is None or output_s3_uri is None:
                raise InvalidInputError(
                    f"{item.product_id}: {item.kind} from S3 needs jobs= and output_s3_uri="
                )
        elif embedder is None:
            raise InvalidInputError(
                f"{item.product_id}: local documents (PDF or text) need embedder="
            )
    model_id = jobs.model_id if jobs is not None else str(getattr(embedder, "model_id", "unknown"))
    report = MediaIngestReport()
    done = 0

    def finished() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(todo))

    previous: dict[tuple[str, str], int] = {}

    def unchanged(item: MediaItem, tag: str) -> bool:
        found = first_stored_segment(store, item.kind, item.product_id)
        if found is None:
            return False
        index, md = found
        count = md.get("segment_count")
        if isinstance(count, int | float) and not isinstance(count, bool):
            previous[(item.product_id, item.kind)] = int(count)
        # A source whose first segment failed last time is embedded again (and reported).
        return bool(
            index == 0
            and md.get("source_uri") == _source_uri(item)
            and md.get("segment_config") == tag
            and md.get("embedding_model") == model_id
            and all(_same(md.get(k), v) for k, v in item.metadata.items())
        )

    def write(item: MediaItem, tag: str, result: SegmentedResult) -> None:
        count = len(result.segments) + len(result.failed_segments)
        extra = {
            **item.metadata,
            "segment_config": tag,
            "embedding_model": model_id,
            "segment_count": count,
        }
        records = segment_records(
            item.product_id, result, segment_type=item.kind, extra_metadata=extra
        )
        if records:
            store.put(records)
            report.vectors_written += len(records)
        # Segments of an earlier run that this run did not (re)write would be stale hits.
        old = previous.get((item.product_id, item.kind), 0)
        fresh = {r.key for r in records}
        stale = [
            key
            for i in range(max(old, count))
            for key in (f"{item.kind}-{item.product_id}-{i}", f"video-{item.product_id}-audio-{i}")
            if key not in fresh and (item.kind == "video" or key.startswith(item.kind))
        ]
        if stale and old:
            existing = [r.key for r in store.get(stale).records]
            if existing:
                store.delete(existing)
                report.vectors_deleted += len(existing)
        for line in result.failure_lines():
            report.failed.append(MediaFailure(item.product_id, item.kind, item.source, line))
        if records:
            report.indexed += 1

    started: list[tuple[MediaItem, str, SegmentedJob, str]] = []
    for item in todo:
        local_text: str | None = None
        local = item.kind == "document" and not item.source.startswith("s3://")
        try:
            if local:
                local_text = _read_text_document(item.source)  # None for a PDF
        except InvalidInputError as exc:
            report.failed.append(
                MediaFailure(
                    item.product_id, item.kind, item.source, f"{type(exc).__name__}: {exc}"
                )
            )
            finished()
            continue
        tag = (
            f"{max_length_chars}chars"
            if local_text is not None
            else _settings_tag(item, segment_seconds, max_length_chars, dpi)
        )
        if unchanged(item, tag):
            report.skipped_unchanged += 1
            finished()
            continue
        try:
            if local and local_text is None:
                assert embedder is not None  # checked for every local document before any call
                pages = embed_pdf(item.source, embedder, dpi=dpi)
                report.embed_calls += len(pages.segments)
                write(item, tag, pages)
                finished()
                continue
            if local_text is not None and len(local_text) <= SYNC_TEXT_LIMIT_CHARS:
                assert embedder is not None
                whole = embed_text_document(local_text, embedder=embedder)
                report.embed_calls += 1
                write(item, tag, replace(whole, source_uri=_source_uri(item)))
                finished()
                continue
            if jobs is None or output_s3_uri is None:
                raise InvalidInputError(
                    f"text document of {len(local_text or '')} characters is over the "
                    f"synchronous limit of {SYNC_TEXT_LIMIT_CHARS}: pass jobs= and "
                    "output_s3_uri= (crossmodal index --media-s3-uri) to segment it"
                )
            source = item.source
            if local_text is not None:  # staged in S3 under its content hash
                digest = hashlib.sha256(local_text.encode("utf-8")).hexdigest()[:24]
                source = join_s3(output_s3_uri, STAGING_PREFIX, f"{digest}.txt")
            manifest = _job_manifest_uri(jobs, item, source, tag, output_s3_uri, embedding_mode)
            resumed = _resume_job(jobs, manifest)
            if resumed is not None:
                logger.info("%s %s: resuming job %s", item.product_id, item.kind, resumed)
                started.append((item, tag, resumed, manifest))
                report.jobs.append(resumed.invocation_arn)
                continue
            if item.kind == "video":
                job = jobs.start_video(
                    item.source,
                    output_s3_uri=output_s3_uri,
                    segment_seconds=segment_seconds,
                    embedding_mode=embedding_mode,
                )
            elif item.kind == "audio":
                job = jobs.start_audio(
                    item.source, output_s3_uri=output_s3_uri, segment_seconds=segment_seconds
                )
            else:
                if local_text is not None:
                    jobs._write(
                        source,
                        local_text.encode("utf-8"),
                        content_type="text/plain; charset=utf-8",
                    )
                job = jobs.start_text(
                    source, output_s3_uri=output_s3_uri, max_length_chars=max_length_chars
                )
        except (InvalidInputError, EmbeddingJobError, ServiceError) as exc:
            report.failed.append(
                MediaFailure(
                    item.product_id, item.kind, item.source, f"{type(exc).__name__}: {exc}"
                )
            )
            finished()
            continue
        _save_job(jobs, manifest, job)
        report.jobs.append(job.invocation_arn)
        report.embed_calls += 1
        started.append((item, tag, job, manifest))

    for item, tag, job, manifest in started:
        assert jobs is not None
        try:
            status = jobs.wait(job, timeout=timeout)
            result = jobs.fetch_results(job, status=status, on_segment_error="report")
        except EmbeddingJobError as exc:  # includes JobTimeoutError: the job keeps its ARN
            report.failed.append(
                MediaFailure(
                    item.product_id, item.kind, item.source, f"{type(exc).__name__}: {exc}"
                )
            )
            finished()
            continue
        if not result.ok:  # a rerun tries the failed segments again with a new job
            _save_job(jobs, manifest, job, retry=True)
        if not item.source.startswith("s3://"):  # a local text document, staged in S3
            result = replace(result, source_uri=_source_uri(item))
        write(item, tag, result)
        finished()
    return report


JOB_MANIFEST_PREFIX = "crossmodal-jobs"
#: Where local text documents over the synchronous limit are uploaded for segmentation.
STAGING_PREFIX = "crossmodal-staging"


def _read_text_document(path: str) -> str | None:
    """The text of a local text document, or ``None`` when the file is a PDF."""
    file = Path(path)
    try:
        with file.open("rb") as f:
            if f.read(5) == b"%PDF-":
                return None
        data = file.read_bytes()
    except OSError as exc:
        raise UnsupportedMediaError(
            f"document not found or unreadable: {file}: {exc.strerror or exc}"
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedMediaError(f"{file} is neither a PDF nor UTF-8 text") from None
    if not text.strip():
        raise UnsupportedMediaError(f"text document {file} is empty")
    return text


def _job_manifest_uri(
    jobs: SegmentedEmbeddingJobs,
    item: MediaItem,
    source: str,
    tag: str,
    output_s3_uri: str,
    embedding_mode: VideoEmbeddingMode,
) -> str:
    """Where the job for this source and these settings is recorded (content-addressed)."""
    mode = embedding_mode if item.kind == "video" else None
    key = json.dumps([jobs.model_id, jobs.dimension, item.kind, source, tag, mode])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return join_s3(output_s3_uri, JOB_MANIFEST_PREFIX, f"{digest}.json")


def _save_job(
    jobs: SegmentedEmbeddingJobs, uri: str, job: SegmentedJob, *, retry: bool = False
) -> None:
    record = {
        "retry": retry,
        "invocationArn": job.invocation_arn,
        "modality": job.modality,
        "sourceUri": job.source_uri,
        "outputS3Uri": job.output_s3_uri,
        "dimension": job.dimension,
        "purpose": job.purpose,
        "maxLengthChars": job.segmentation.max_length_chars,
        "durationSeconds": job.segmentation.segment_seconds,
        "embeddingMode": job.embedding_mode,
    }
    jobs._write(uri, json.dumps(record).encode("utf-8"), content_type="application/json")


def _resume_job(jobs: SegmentedEmbeddingJobs, uri: str) -> SegmentedJob | None:
    """The recorded job for ``uri`` when it is still running or completed, else ``None``."""
    try:
        raw = jobs._read(uri)
    except ResourceNotFoundError:
        return None
    try:
        m = json.loads(raw)
        job = SegmentedJob(
            invocation_arn=str(m["invocationArn"]),
            modality=m["modality"],
            source_uri=str(m["sourceUri"]),
            output_s3_uri=str(m["outputS3Uri"]),
            dimension=int(m["dimension"]),
            purpose=str(m["purpose"]),
            segmentation=SegmentationConfig(
                max_length_chars=int(m["maxLengthChars"]),
                segment_seconds=int(m["durationSeconds"]),
            ),
            embedding_mode=m.get("embeddingMode"),
        )
    except (ValueError, KeyError, TypeError, InvalidInputError):
        logger.warning("ignoring unreadable job record %s", uri)
        return None
    if m.get("retry"):
        logger.info("recorded job %s had failed segments: starting a new one", job.invocation_arn)
        return None
    if jobs.status(job).status == "Failed":
        logger.info("recorded job %s failed: starting a new one", job.invocation_arn)
        return None
    return job


#: Segments probed for the stored ``segment_count`` when the first ones failed to embed.
SEGMENT_PROBE = 8


def first_stored_segment(
    store: VectorStore, kind: str, product_id: str
) -> tuple[int, Mapping[str, MetadataValue]] | None:
    """The lowest-index stored segment among the first :data:`SEGMENT_PROBE` of a product's
    ``kind`` source, as ``(index, metadata)``; every segment carries ``segment_count``."""
    keys = [f"{kind}-{product_id}-{i}" for i in range(SEGMENT_PROBE)]
    found = {r.key: r.metadata for r in store.get(keys).records}
    for i, key in enumerate(keys):
        if key in found:
            return i, found[key]
    return None


def _same(stored: object, given: object) -> bool:
    # Stores hand lists back for tuples and may turn ints into floats (JSON numbers).
    if isinstance(given, tuple | list) and isinstance(stored, tuple | list):
        return list(stored) == list(given)
    return stored == given


def _source_uri(item: MediaItem) -> str:
    if item.source.startswith("s3://"):
        return item.source
    return Path(item.source).resolve().as_uri()
