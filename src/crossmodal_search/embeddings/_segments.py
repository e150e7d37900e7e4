"""Segmented embeddings: settings, results, document pages and the records they become.

Long media and long text are embedded per segment by Nova's asynchronous API (see
:mod:`crossmodal_search.embeddings._segmented`); PDF manuals are embedded per page, each page
rendered to an image and sent with ``detailLevel="DOCUMENT_IMAGE"``. Both produce a
:class:`SegmentedResult`; ``crossmodal_search.search`` turns one into store records that keep
the product id and the segment's position (seconds, characters or page numbers).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from crossmodal_search._types import EmbeddingPurpose, PurposeLike, Vector
from crossmodal_search.embeddings._media import is_s3_uri
from crossmodal_search.errors import ConfigurationError, InvalidInputError, UnsupportedMediaError

if TYPE_CHECKING:
    from PIL import Image

    from crossmodal_search.embeddings._protocol import Embedder

logger = logging.getLogger(__name__)

__all__ = [
    "MEDIA_SEGMENT_SECONDS_RANGE",
    "SYNC_TEXT_LIMIT_CHARS",
    "TEXT_SEGMENT_CHARS_RANGE",
    "OutputFailure",
    "Segment",
    "SegmentType",
    "SegmentUnit",
    "SegmentationConfig",
    "SegmentedResult",
    "embed_pdf",
    "render_pdf_page",
    "render_pdf_pages",
]

#: Documented maximum of inline ``text.value`` in a synchronous call; longer text goes async.
SYNC_TEXT_LIMIT_CHARS = 8_192
#: Nova's ``segmentationConfig.maxLengthChars`` range for text (inclusive).
TEXT_SEGMENT_CHARS_RANGE = (800, 50_000)
#: Nova's ``segmentationConfig.durationSeconds`` range for audio and video (inclusive).
MEDIA_SEGMENT_SECONDS_RANGE = (1, 30)

SegmentUnit: TypeAlias = Literal["seconds", "chars", "pages"]
#: What a product's segment came from; stored as metadata ``type``.
SegmentType: TypeAlias = Literal["video", "audio", "document"]
SegmentStatus: TypeAlias = Literal["SUCCESS", "FAILURE"]


def check_s3_uri(uri: str, *, what: str) -> None:
    """Raise :class:`InvalidInputError` unless ``uri`` fits Bedrock's ``s3Uri`` pattern."""
    if not is_s3_uri(uri):
        raise InvalidInputError(
            f"{what} must be an s3://bucket/key URI (<= 1024 chars), got {uri!r}"
        )


@dataclass(frozen=True, kw_only=True)
class SegmentationConfig:
    """How Nova splits long inputs into segments (``segmentationConfig``).

    Attributes:
        max_length_chars: characters per text segment, 800-50,000 (default 32,000). Nova
            splits at word boundaries.
        segment_seconds: seconds per audio or video segment, 1-30 (default 5); sent as
            Nova's ``durationSeconds``.

    Both are checked here, before any request is built.
    """

    max_length_chars: int = 32_000
    segment_seconds: int = 5

    def __post_init__(self) -> None:
        lo, hi = TEXT_SEGMENT_CHARS_RANGE
        if type(self.max_length_chars) is not int or not lo <= self.max_length_chars <= hi:
            raise InvalidInputError(
                f"max_length_chars must be an integer in {lo}-{hi}, got {self.max_length_chars!r}"
            )
        lo, hi = MEDIA_SEGMENT_SECONDS_RANGE
        if type(self.segment_seconds) is not int or not lo <= self.segment_seconds <= hi:
            raise InvalidInputError(
                f"segment_seconds must be an integer in {lo}-{hi}, got {self.segment_seconds!r}"
            )

    def text_payload(self) -> dict[str, int]:
        """The ``segmentationConfig`` object of a text request."""
        return {"maxLengthChars": self.max_length_chars}

    def media_payload(self) -> dict[str, int]:
        """The ``segmentationConfig`` object of an audio or video request."""
        return {"durationSeconds": self.segment_seconds}


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a long input and its embedding.

    ``start``/``end`` are zero-based positions in ``unit``: seconds for audio and video,
    characters for text (Nova documents ``segmentEndCharPosition`` as exclusive), pages for PDF
    documents (``end`` exclusive). A failed segment has ``vector=None``, ``status="FAILURE"``
    and the service's ``failure_reason`` (for example ``RAI_VIOLATION_INPUT_IMAGE_DEFLECTION``).
    """

    vector: Vector | None
    index: int
    start: float | None
    end: float | None
    unit: SegmentUnit
    embedding_type: str
    status: SegmentStatus = "SUCCESS"
    failure_reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """True when the segment has a vector."""
        return self.status == "SUCCESS" and self.vector is not None

    def describe(self) -> str:
        """A one-line description used in logs and error messages."""
        where = "?" if self.start is None else f"{self.start:g}-{self.end:g} {self.unit}"
        line = f"segment {self.index} ({self.embedding_type}, {where})"
        if not self.ok:
            line += f": {self.failure_reason or 'FAILURE'}"
            if self.message:
                line += f" ({self.message})"
        return line


@dataclass(frozen=True, slots=True)
class OutputFailure:
    """A whole output of a job (one ``embeddingResults`` entry) that produced no segments."""

    embedding_type: str
    status: str
    failure_reason: str | None = None
    message: str | None = None

    def describe(self) -> str:
        """A one-line description used in logs and error messages."""
        line = f"{self.embedding_type} output {self.status}"
        if self.failure_reason:
            line += f": {self.failure_reason}"
        if self.message:
            line += f" ({self.message})"
        return line


@dataclass(frozen=True)
class SegmentedResult:
    """The segments of one source, successful ones in ``segments`` (ordered by type, index).

    Nothing is dropped: every failed segment is in ``failed_segments`` and every output that
    failed as a whole (no file to read) is in ``failed_outputs``.
    """

    segments: tuple[Segment, ...]
    failed_segments: tuple[Segment, ...] = ()
    source_uri: str = ""
    failed_outputs: tuple[OutputFailure, ...] = ()
    embedding_dimension: int | None = None
    job_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when no segment and no output failed."""
        return not self.failed_segments and not self.failed_outputs

    @property
    def status(self) -> Literal["SUCCESS", "PARTIAL_SUCCESS", "FAILURE"]:
        """``SUCCESS``, ``PARTIAL_SUCCESS`` (some vectors, some failures) or ``FAILURE``."""
        if self.ok:
            return "SUCCESS"
        return "PARTIAL_SUCCESS" if self.segments else "FAILURE"

    def failure_lines(self) -> list[str]:
        """One line per failed segment or output."""
        return [f.describe() for f in self.failed_outputs] + [
            s.describe() for s in self.failed_segments
        ]

    def vectors(self) -> Vector:
        """The successful segments' vectors as an ``(n, d)`` float32 matrix."""
        if not self.segments:
            return np.zeros((0, self.embedding_dimension or 0), dtype=np.float32)
        return np.stack([s.vector for s in self.segments if s.vector is not None])


# --- documents -------------------------------------------------------------------------------

PDF_EXTRA_HINT = "pip install 'crossmodal-search[pdf]'"


def _import_pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError as exc:
        raise ConfigurationError(
            f"rendering PDF pages needs the optional 'pdf' extra: {PDF_EXTRA_HINT} "
            "(or pass rendered page images)"
        ) from exc
    return pypdfium2


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(5)
    except OSError:
        return b""


def render_pdf_page(page: object, page_number: int) -> object:
    """Page ``page_number`` of a PDF (bytes or a local path) as a PIL image, at 144 dpi.

    Any input that is not a PDF is returned unchanged, so a caller can take page images and
    PDFs alike.

    Raises:
        ConfigurationError: pypdfium2 (the ``pdf`` extra) is not installed.
        InvalidInputError: the PDF cannot be read, or has no page ``page_number``.
    """
    data: bytes | None = None
    if isinstance(page, (bytes, bytearray)) and bytes(page[:5]) == b"%PDF-":
        data = bytes(page)
    elif isinstance(page, (str, os.PathLike)) and not str(page).startswith("s3://"):
        p = Path(page)
        if p.suffix.lower() == ".pdf" or (p.is_file() and _head(p) == b"%PDF-"):
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise InvalidInputError(f"cannot read document {str(p)!r}: {exc}") from exc
    if data is None:
        return page
    pdfium = _import_pdfium()
    try:
        pdf = pdfium.PdfDocument(data)
    except Exception as exc:
        raise InvalidInputError(f"not a readable PDF: {exc}") from exc
    try:
        if not 0 <= page_number < len(pdf):
            raise InvalidInputError(
                f"page_number {page_number} is out of range; the PDF has {len(pdf)} pages"
            )
        return pdf[page_number].render(scale=2.0).to_pil()
    finally:
        pdf.close()


def render_pdf_pages(
    path: str | os.PathLike[str] | bytes, *, dpi: int = 150, max_pages: int | None = None
) -> list[Image.Image]:
    """Render the pages of a PDF (a path or the file's bytes) to RGB Pillow images.

    Raises:
        ConfigurationError: pypdfium2 (the ``pdf`` extra) is not installed.
        UnsupportedMediaError: the file is missing or is not a readable PDF.
        InvalidInputError: ``dpi`` is outside 36-600 or ``max_pages`` < 1.
    """
    if type(dpi) is not int or not 36 <= dpi <= 600:
        raise InvalidInputError(f"dpi must be an integer in 36-600, got {dpi!r}")
    if max_pages is not None and max_pages < 1:
        raise InvalidInputError(f"max_pages must be >= 1, got {max_pages!r}")
    pdfium = _import_pdfium()
    source: bytes | str
    if isinstance(path, bytes):
        source = path
    else:
        p = Path(path)
        if not p.is_file():
            raise UnsupportedMediaError(f"PDF not found: {p}")
        source = str(p)
    try:
        doc = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        raise UnsupportedMediaError(f"not a readable PDF: {path!r}: {exc}") from exc
    try:
        count = len(doc) if max_pages is None else min(len(doc), max_pages)
        pages: list[Image.Image] = []
        for i in range(count):
            page = doc[i]
            try:
                bitmap = page.render(scale=dpi / 72)
                pages.append(bitmap.to_pil().convert("RGB"))
            finally:
                page.close()
        return pages
    finally:
        doc.close()


def embed_pdf(
    path: str | os.PathLike[str] | bytes,
    embedder: Embedder,
    *,
    dpi: int = 150,
    purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
    dimension: int | None = None,
    max_pages: int | None = None,
    source_uri: str | None = None,
) -> SegmentedResult:
    """Embed every page of a PDF as a document image; one :class:`Segment` per page.

    Pages are rendered with pypdfium2 at ``dpi`` and embedded with the embedder's
    ``embed_document`` (Nova sends ``detailLevel="DOCUMENT_IMAGE"``). Index them with the
    default ``GENERIC_INDEX`` and query them with ``DOCUMENT_RETRIEVAL``. Page ``i`` (zero-based)
    becomes segment ``i`` with ``start=i``, ``end=i+1`` and ``unit="pages"``.

    Raises:
        ConfigurationError: pypdfium2 is missing, or the embedder has no ``embed_document``.
        UnsupportedMediaError: the file is not a readable PDF or has no pages.
    """
    embed_document: Callable[..., Any] | None = getattr(embedder, "embed_document", None)
    if embed_document is None:
        raise ConfigurationError(
            f"{type(embedder).__name__} has no embed_document(); document pages need an embedder "
            "that embeds DOCUMENT_IMAGE (NovaEmbeddings or OfflineEmbedder)"
        )
    pages = render_pdf_pages(path, dpi=dpi, max_pages=max_pages)
    if not pages:
        raise UnsupportedMediaError(f"PDF has no pages: {path!r}")
    segments: list[Segment] = []
    for i, image in enumerate(pages):
        vector = np.asarray(
            embed_document(image, purpose=purpose, dimension=dimension), dtype=np.float32
        ).reshape(-1)
        segments.append(
            Segment(vector, i, float(i), float(i + 1), "pages", "DOCUMENT_IMAGE", "SUCCESS")
        )
    if source_uri is None:
        source_uri = "" if isinstance(path, bytes) else Path(path).resolve().as_uri()
    logger.info("embedded %d PDF pages of %s", len(segments), source_uri or "<bytes>")
    dims = {int(s.vector.shape[0]) for s in segments if s.vector is not None}
    return SegmentedResult(
        tuple(segments), source_uri=source_uri, embedding_dimension=dims.pop() if dims else None
    )
