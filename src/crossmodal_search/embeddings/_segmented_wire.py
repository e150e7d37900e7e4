"""Nova's segmented-embedding jobs on the wire: the request, the job records, the output files.

Nothing here calls AWS. :class:`~crossmodal_search.embeddings.SegmentedEmbeddingJobs` sends the
``modelInput`` built by :func:`segmented_request`, keeps a :class:`SegmentedJob`, and hands the
files the job wrote to :func:`parse_result`, which follows each ``outputFileUri`` through the
``read`` function it is given and parses every JSONL line into a :class:`Segment`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal, TypeAlias

import numpy as np

from crossmodal_search._aws import join_s3
from crossmodal_search.embeddings._nova_wire import SCHEMA_VERSION, VideoEmbeddingMode
from crossmodal_search.embeddings._segments import (
    OutputFailure,
    Segment,
    SegmentationConfig,
    SegmentedResult,
    SegmentUnit,
)
from crossmodal_search.errors import EmbeddingJobError, UnsupportedMediaError

__all__ = [
    "RESULT_FILE_NAME",
    "Modality",
    "OnSegmentError",
    "SegmentedJob",
    "SegmentedJobStatus",
    "media_format",
    "parse_result",
    "parse_segments",
    "segmented_request",
]

logger = logging.getLogger(__name__)

#: What :meth:`SegmentedEmbeddingJobs.fetch_results` does when segments failed: raise
#: :class:`EmbeddingJobError` naming each, or return them in ``SegmentedResult.failed_segments``.
OnSegmentError: TypeAlias = Literal["raise", "report"]
Modality: TypeAlias = Literal["video", "audio", "text"]

RESULT_FILE_NAME = "segmented-embedding-result.json"
_SUCCESS = "SUCCESS"
_PARTIAL = "PARTIAL_SUCCESS"
#: The docs say FAILURE; some clients have seen FAILED. Both mean the same.
_FAILED = frozenset({"FAILURE", "FAILED"})


@dataclass(frozen=True)
class SegmentedJob:
    """A submitted segmented-embedding job: enough to poll it and read its results later."""

    invocation_arn: str
    modality: Modality
    source_uri: str
    output_s3_uri: str
    dimension: int
    purpose: str
    segmentation: SegmentationConfig
    embedding_mode: VideoEmbeddingMode | None = None

    @property
    def job_id(self) -> str:
        """The last segment of the invocation ARN; Nova names the output folder after it."""
        return self.invocation_arn.rsplit("/", 1)[-1]

    def error(self, message: str, *, status: str = "Completed") -> EmbeddingJobError:
        """An :class:`EmbeddingJobError` about this job."""
        return EmbeddingJobError(message, job_id=self.invocation_arn, status=status)


@dataclass(frozen=True)
class SegmentedJobStatus:
    """What ``get_async_invoke`` says about a job."""

    invocation_arn: str
    status: str
    failure_message: str | None = None
    output_s3_uri: str | None = None

    @property
    def finished(self) -> bool:
        """True once the job is ``Completed`` or ``Failed``."""
        return self.status in ("Completed", "Failed")

    @classmethod
    def from_response(cls, arn: str, response: Mapping[str, Any]) -> SegmentedJobStatus:
        """The status in a ``get_async_invoke`` response."""
        out = response.get("outputDataConfig", {}).get("s3OutputDataConfig", {}).get("s3Uri")
        return cls(
            invocation_arn=arn,
            status=str(response.get("status", "")),
            failure_message=response.get("failureMessage"),
            output_s3_uri=str(out) if out else None,
        )


def media_format(uri: str, given: str | None, allowed: tuple[str, ...], kind: str) -> str:
    """The ``format`` of a media object in S3: ``given``, else the key's extension."""
    fmt = (given or PurePosixPath(uri.split("?", 1)[0]).suffix.lstrip(".")).lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in allowed:
        raise UnsupportedMediaError(
            f"{kind} format {fmt or '(none)'!r} of {uri!r} is not supported; pass format= one of "
            f"{', '.join(sorted(allowed))}"
        )
    return fmt


def segmented_request(
    modality: Modality, media_params: Mapping[str, Any], *, purpose: str, dimension: int
) -> dict[str, Any]:
    """The ``modelInput`` of a ``SEGMENTED_EMBEDDING`` ``start_async_invoke``."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "taskType": "SEGMENTED_EMBEDDING",
        "segmentedEmbeddingParams": {
            "embeddingPurpose": purpose,
            "embeddingDimension": dimension,
            modality: dict(media_params),
        },
    }


def parse_result(
    job: SegmentedJob, result_uri: str, read: Callable[[str], bytes]
) -> SegmentedResult:
    """The job's segments: ``segmented-embedding-result.json`` at ``result_uri`` and every
    ``embeddingResults[].outputFileUri`` it names, each read with ``read``."""
    try:
        doc = json.loads(read(result_uri))
    except (ValueError, UnicodeDecodeError) as exc:
        raise job.error(f"{result_uri} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("embeddingResults"), list):
        raise job.error(f"{result_uri} has no embeddingResults list")
    dimension = int(doc.get("embeddingDimension") or job.dimension)
    ok: list[Segment] = []
    failed: list[Segment] = []
    failed_outputs: list[OutputFailure] = []
    for entry in doc["embeddingResults"]:
        if not isinstance(entry, dict):
            raise job.error(f"{result_uri}: embeddingResults holds a {type(entry).__name__}")
        etype = str(entry.get("embeddingType", "UNKNOWN"))
        status = str(entry.get("status", ""))
        reason, message = entry.get("failureReason"), entry.get("message")
        file_uri = entry.get("outputFileUri")
        if status not in (_SUCCESS, _PARTIAL) and status not in _FAILED:
            logger.warning("job %s: unknown result status %r for %s", job.job_id, status, etype)
        if not file_uri:
            # No segments to read: the whole output failed (or the service left no file).
            failed_outputs.append(
                OutputFailure(etype, status or "FAILURE", reason, message or "no outputFileUri")
            )
            continue
        if not file_uri.startswith("s3://"):
            file_uri = join_s3(result_uri.rsplit("/", 1)[0], file_uri)
        good, bad = parse_segments(job, file_uri, read(file_uri), etype, dimension)
        ok.extend(good)
        failed.extend(bad)
        if status in _FAILED and not bad:
            failed_outputs.append(OutputFailure(etype, status, reason, message))
        elif status == _PARTIAL and not bad:
            logger.warning(
                "job %s: %s output is PARTIAL_SUCCESS but no segment failed", job.job_id, etype
            )
    return SegmentedResult(
        segments=tuple(ok),
        failed_segments=tuple(failed),
        source_uri=str(doc.get("sourceFileUri") or job.source_uri),
        failed_outputs=tuple(failed_outputs),
        embedding_dimension=dimension,
        job_id=job.invocation_arn,
    )


def parse_segments(
    job: SegmentedJob, uri: str, raw: bytes, embedding_type: str, dimension: int
) -> tuple[list[Segment], list[Segment]]:
    """``(successful, failed)`` segments of one JSONL output file, each sorted by index."""
    unit: SegmentUnit = "chars" if job.modality == "text" else "seconds"
    ok: list[Segment] = []
    failed: list[Segment] = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            index, start, end = _position(item.get("segmentMetadata") or {}, unit, lineno - 1)
        except (ValueError, TypeError, AttributeError) as exc:
            raise job.error(f"{uri} line {lineno} is not a segment record: {exc}") from exc
        etype = str(item.get("embeddingType") or embedding_type)
        status = str(item.get("status") or (_SUCCESS if item.get("embedding") else "FAILURE"))
        embedding = item.get("embedding")
        if status == _SUCCESS and embedding:
            vector = np.asarray(embedding, dtype=np.float32)
            if vector.shape != (dimension,) or not np.all(np.isfinite(vector)):
                raise job.error(
                    f"{uri} line {lineno}: embedding has shape {vector.shape}, expected "
                    f"({dimension},) finite values"
                )
            ok.append(Segment(vector, index, start, end, unit, etype, "SUCCESS"))
            continue
        if status == _SUCCESS:  # SUCCESS without an embedding is still a failure
            reason, message = "MISSING_EMBEDDING", "status SUCCESS but no embedding"
        else:
            reason, message = item.get("failureReason"), item.get("message")
            if status not in _FAILED:
                message = f"unknown status {status!r}" + (f": {message}" if message else "")
        failed.append(Segment(None, index, start, end, unit, etype, "FAILURE", reason, message))
    ok.sort(key=lambda s: s.index)
    failed.sort(key=lambda s: s.index)
    return ok, failed


def _position(
    meta: Mapping[str, Any], unit: SegmentUnit, default_index: int
) -> tuple[int, float | None, float | None]:
    """``(index, start, end)`` of a segment from its ``segmentMetadata``."""
    index = int(meta.get("segmentIndex", default_index))
    if unit == "chars":
        start, end = meta.get("segmentStartCharPosition"), meta.get("segmentEndCharPosition")
    else:
        start, end = meta.get("segmentStartSeconds"), meta.get("segmentEndSeconds")
    return index, None if start is None else float(start), None if end is None else float(end)
