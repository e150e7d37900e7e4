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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_search._types import MetadataValue
from crossmodal_search.embeddings import (
    SYNC_TEXT_LIMIT_CHARS,
    SegmentationConfig,
    SegmentedResult,
    VideoEmbeddingMode,
    check_s3_uri,
    embed_pdf,
)
from crossmodal_search.errors import (
    ConfigurationError,
    EmbeddingJobError,
    InvalidInputError,
    ResourceNotFoundError,
    ServiceError,
    UnsupportedMediaError,
)
from crossmodal_search.search._catalog import Product
from crossmodal_search.search._results import ItemFailure
from crossmodal_search.search._schema import (
    MEDIA_TYPES,
    MediaKind,
    metadata_problem,
    segment_key,
    segment_keys,
    segment_metadata,
    segment_records,
    variant_metadata,
)
from crossmodal_search.stores import StoreLimits

if TYPE_CHECKING:
    from crossmodal_search.embeddings import Embedder, SegmentedEmbeddingJobs, SegmentedJob
    from crossmodal_search.stores import VectorStore

logger = logging.getLogger(__name__)

__all__ = [
    "MediaFailure",
    "MediaIngestReport",
    "MediaItem",
    "check_jobs",
    "first_stored_segment",
    "index_media",
    "media_items",
    "stored_segment_keys",
]

# --- product media -> store -----------------------------------------------------------------


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
    settings = _Settings(
        SegmentationConfig(max_length_chars=max_length_chars, segment_seconds=segment_seconds),
        embedding_mode,
        dpi,
        timeout,
    )
    todo = list(items)
    _check_items(todo, jobs=jobs, embedder=embedder, output_s3_uri=output_s3_uri)
    run = _MediaRun(store, jobs, embedder, output_s3_uri, settings, len(todo), progress)
    started = [job for item in todo if (job := run.start(item)) is not None]
    for job in started:
        run.finish(job)
    return run.report


@dataclass(frozen=True)
class _Settings:
    segmentation: SegmentationConfig
    embedding_mode: VideoEmbeddingMode
    dpi: int
    timeout: float | None

    def tag(self, item: MediaItem, *, local_text: bool) -> str:
        """How the source is segmented (part of what makes a stored source unchanged)."""
        if item.kind == "document" and not local_text and not item.source.startswith("s3://"):
            return f"pdf:{self.dpi}dpi"
        if item.kind == "document":
            return f"{self.segmentation.max_length_chars}chars"
        return f"{self.segmentation.segment_seconds}s"


def _check_items(
    todo: Sequence[MediaItem],
    *,
    jobs: SegmentedEmbeddingJobs | None,
    embedder: Embedder | None,
    output_s3_uri: str | None,
) -> None:
    """Bad items and missing settings, before any call."""
    seen: set[tuple[str, str]] = set()
    for item in todo:
        if not isinstance(item, MediaItem) or item.kind not in MEDIA_TYPES:
            raise InvalidInputError(f"not a MediaItem with kind video/audio/document: {item!r}")
        if (item.product_id, item.kind) in seen:
            raise InvalidInputError(f"{item.product_id}: two {item.kind} sources")
        seen.add((item.product_id, item.kind))
        if item.kind != "document" or item.source.startswith("s3://"):
            check_s3_uri(item.source, what=f"{item.product_id} {item.kind} source")
            if jobs is None or output_s3_uri is None:
                raise InvalidInputError(
                    f"{item.product_id}: {item.kind} from S3 needs jobs= and output_s3_uri="
                )
        elif embedder is None:
            raise InvalidInputError(
                f"{item.product_id}: local documents (PDF or text) need embedder="
            )


@dataclass(frozen=True)
class _Started:
    """A source whose asynchronous job runs (or was resumed)."""

    item: MediaItem
    tag: str
    job: SegmentedJob
    manifest: str


class _MediaRun:
    """The state of one :func:`index_media` call: what is written, skipped and failed."""

    def __init__(
        self,
        store: VectorStore,
        jobs: SegmentedEmbeddingJobs | None,
        embedder: Embedder | None,
        output_s3_uri: str | None,
        settings: _Settings,
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._embedder = embedder
        self._output = output_s3_uri
        self._settings = settings
        self._total = total
        self._progress = progress
        self._done = 0
        self._model_id = (
            jobs.model_id if jobs is not None else str(getattr(embedder, "model_id", "unknown"))
        )
        # Segment counts of an earlier run, by source: what a rewrite may leave stale.
        self._previous: dict[tuple[str, str], int] = {}
        self.report = MediaIngestReport()

    def _finished(self) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress(self._done, self._total)

    def _fail(self, item: MediaItem, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.report.failed.append(MediaFailure(item.product_id, item.kind, item.source, reason))
        self._finished()

    def start(self, item: MediaItem) -> _Started | None:
        """Index a local document now, or start (or resume) the job of a source in S3; None
        when the source is finished (written, skipped or failed)."""
        local = item.kind == "document" and not item.source.startswith("s3://")
        try:
            local_text = _read_text_document(item.source) if local else None  # None: a PDF
        except InvalidInputError as exc:
            self._fail(item, exc)
            return None
        tag = self._settings.tag(item, local_text=local_text is not None)
        if self._unchanged(item, tag):
            self.report.skipped_unchanged += 1
            self._finished()
            return None
        try:
            if local and (local_text is None or len(local_text) <= SYNC_TEXT_LIMIT_CHARS):
                self._embed_local(item, tag, local_text)
                return None
            return self._start_job(item, tag, local_text)
        except (InvalidInputError, EmbeddingJobError, ServiceError) as exc:
            self._fail(item, exc)
            return None

    def _embed_local(self, item: MediaItem, tag: str, text: str | None) -> None:
        """A local PDF page by page, or a short local text as one segment."""
        from crossmodal_search.embeddings import embed_text_document

        assert self._embedder is not None  # checked for every local document before any call
        if text is None:
            result = embed_pdf(item.source, self._embedder, dpi=self._settings.dpi)
            self.report.embed_calls += len(result.segments)
        else:
            whole = embed_text_document(text, embedder=self._embedder)
            result = replace(whole, source_uri=_source_uri(item))
            self.report.embed_calls += 1
        self._write(item, tag, result)
        self._finished()

    def _start_job(self, item: MediaItem, tag: str, local_text: str | None) -> _Started:
        from crossmodal_search._aws import join_s3

        jobs, output = self._jobs, self._output
        if jobs is None or output is None:
            raise InvalidInputError(
                f"text document of {len(local_text or '')} characters is over the "
                f"synchronous limit of {SYNC_TEXT_LIMIT_CHARS}: pass jobs= and "
                "output_s3_uri= (crossmodal index --media-s3-uri) to segment it"
            )
        source = item.source
        if local_text is not None:  # staged in S3 under its content hash
            digest = hashlib.sha256(local_text.encode("utf-8")).hexdigest()[:24]
            source = join_s3(output, STAGING_PREFIX, f"{digest}.txt")
        mode = self._settings.embedding_mode
        manifest = _job_manifest_uri(jobs, item, source, tag, output, mode)
        resumed = _resume_job(jobs, manifest)
        if resumed is not None:
            logger.info("%s %s: resuming job %s", item.product_id, item.kind, resumed)
            self.report.jobs.append(resumed.invocation_arn)
            return _Started(item, tag, resumed, manifest)
        seconds = self._settings.segmentation.segment_seconds
        if item.kind == "video":
            job = jobs.start_video(
                item.source, output_s3_uri=output, segment_seconds=seconds, embedding_mode=mode
            )
        elif item.kind == "audio":
            job = jobs.start_audio(item.source, output_s3_uri=output, segment_seconds=seconds)
        else:
            if local_text is not None:
                data = local_text.encode("utf-8")
                jobs._write(source, data, content_type="text/plain; charset=utf-8")
            chars = self._settings.segmentation.max_length_chars
            job = jobs.start_text(source, output_s3_uri=output, max_length_chars=chars)
        _save_job(jobs, manifest, job)
        self.report.jobs.append(job.invocation_arn)
        self.report.embed_calls += 1
        return _Started(item, tag, job, manifest)

    def finish(self, started: _Started) -> None:
        """Wait for a job, then write its segments."""
        jobs = self._jobs
        assert jobs is not None
        item = started.item
        try:
            status = jobs.wait(started.job, timeout=self._settings.timeout)
            result = jobs.fetch_results(started.job, status=status, on_segment_error="report")
        except EmbeddingJobError as exc:  # includes JobTimeoutError: the job keeps its ARN
            self._fail(item, exc)
            return
        if not result.ok:  # a rerun tries the failed segments again with a new job
            _save_job(jobs, started.manifest, started.job, retry=True)
        if not item.source.startswith("s3://"):  # a local text document, staged in S3
            result = replace(result, source_uri=_source_uri(item))
        self._write(item, started.tag, result)
        self._finished()

    def _unchanged(self, item: MediaItem, tag: str) -> bool:
        found = first_stored_segment(self._store, item.kind, item.product_id)
        if found is None:
            return False
        index, md = found
        count = md.get("segment_count")
        if isinstance(count, int | float) and not isinstance(count, bool):
            self._previous[(item.product_id, item.kind)] = int(count)
        # A source whose first segment failed last time is embedded again (and reported).
        return bool(
            index == 0
            and md.get("source_uri") == _source_uri(item)
            and md.get("segment_config") == tag
            and md.get("embedding_model") == self._model_id
            and all(_same(md.get(k), v) for k, v in item.metadata.items())
        )

    def _write(self, item: MediaItem, tag: str, result: SegmentedResult) -> None:
        count = len(result.segments) + len(result.failed_segments)
        extra = {
            **item.metadata,
            "segment_config": tag,
            "embedding_model": self._model_id,
            "segment_count": count,
        }
        records = segment_records(item.product_id, result, kind=item.kind, extra_metadata=extra)
        if records:
            self._store.put(records)
            self.report.vectors_written += len(records)
        # Segments of an earlier run that this run did not (re)write would be stale hits.
        old = self._previous.get((item.product_id, item.kind), 0)
        if old:
            fresh = {r.key for r in records}
            candidates = segment_keys(item.kind, item.product_id, max(old, count))
            stale = [key for key in candidates if key not in fresh]
            existing = [r.key for r in self._store.get(stale).records] if stale else []
            if existing:
                self._store.delete(existing)
                self.report.vectors_deleted += len(existing)
        for line in result.failure_lines():
            self.report.failed.append(MediaFailure(item.product_id, item.kind, item.source, line))
        if records:
            self.report.indexed += 1


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
    from crossmodal_search._aws import join_s3

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
    from crossmodal_search.embeddings import SegmentedJob

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
    store: VectorStore, kind: MediaKind, product_id: str
) -> tuple[int, Mapping[str, MetadataValue]] | None:
    """The lowest-index stored segment among the first :data:`SEGMENT_PROBE` of a product's
    ``kind`` source, as ``(index, metadata)``; every segment carries ``segment_count``."""
    keys = [segment_key(kind, product_id, i) for i in range(SEGMENT_PROBE)]
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


def stored_segment_keys(store: VectorStore, product_ids: Iterable[str]) -> list[str]:
    """Keys of every stored segment of these products (each segment knows the count)."""
    keys: list[str] = []
    for pid in product_ids:
        for kind in MEDIA_TYPES:
            found = first_stored_segment(store, kind, pid)
            if found is None:
                continue
            count = found[1].get("segment_count")
            n = int(count) if isinstance(count, int | float) and count >= 1 else SEGMENT_PROBE
            keys.extend(segment_keys(kind, pid, n))
    return keys


def check_jobs(jobs: SegmentedEmbeddingJobs, *, model_id: str, dimension: int) -> None:
    """Segments and queries must share one model and one dimension.

    Raises:
        ConfigurationError: ``jobs`` embeds with another model or dimension.
    """
    if jobs.model_id != model_id:
        raise ConfigurationError(
            f"the async jobs embed with {jobs.model_id!r} but the searcher with "
            f"{model_id!r}; segments and queries must share one model"
        )
    if jobs.dimension != dimension:
        raise ConfigurationError(
            f"the async jobs embed {jobs.dimension}-dimensional vectors but the store "
            f"holds {dimension}-dimensional ones"
        )


def media_items(
    products: Iterable[Product], *, store: VectorStore, limits: StoreLimits, model_id: str
) -> tuple[list[MediaItem], list[ItemFailure]]:
    """The media sources of ``products`` with the metadata their segments carry, and the
    products whose segment metadata the store would refuse (checked before any call)."""
    items: list[MediaItem] = []
    failed: list[ItemFailure] = []
    for product in products:
        for kind in MEDIA_TYPES:
            source = getattr(product, kind)
            if source is None:
                continue
            item = MediaItem(product.product_id, kind, source, _media_metadata(product))
            # The largest metadata a segment of this source can carry.
            sample = segment_metadata(
                kind,
                product.product_id,
                index=0,
                unit="seconds",
                embedding_type="AUDIO_VIDEO_COMBINED",
                source_uri=item.source,
                start=0.0,
                end=0.0,
                extra={
                    **item.metadata,
                    "segment_config": "AUDIO_VIDEO_SEPARATE-30s",
                    "embedding_model": model_id,
                    "segment_count": 0,
                },
            )
            keyed = {segment_key(kind, product.product_id, 0): sample}
            problem = metadata_problem(store, limits, keyed, own=item.metadata)
            if problem is None:
                items.append(item)
            else:
                failed.append(
                    ItemFailure(product_id=product.product_id, kind="metadata", reason=problem)
                )
    return items, failed


def _media_metadata(product: Product) -> dict[str, MetadataValue]:
    md: dict[str, MetadataValue] = dict(product.metadata)
    if product.title is not None:
        md["title"] = product.title
    md["text"] = product.text
    if product.image is not None:
        md["image_path"] = product.image
    md.update(variant_metadata(product.variant_group))
    # A rerun compares every key stored on the first segment, so changed product metadata (or
    # text) re-indexes the media instead of leaving stale segments.
    described: list[object] = [product.metadata, product.text, product.image]
    if product.title is not None:
        described.append(product.title)
    described += [v] if (v := variant_metadata(product.variant_group)) else []
    md["metadata_hash"] = hashlib.sha256(
        json.dumps(described, sort_keys=True).encode()
    ).hexdigest()[:32]
    return md
