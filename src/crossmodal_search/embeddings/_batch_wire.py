"""Bedrock batch inference on the wire: requests, job records, results, output lines.

Nothing here calls AWS: :class:`~crossmodal_search.embeddings.BatchEmbeddingJobs` writes the
lines :func:`record_lines` makes, keeps a :class:`BatchJob`, and reads each ``.out`` line back
with :func:`parse_output_line` into a :class:`BatchResult`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from crossmodal_search._types import EmbeddingPurpose, PurposeLike, Vector
from crossmodal_search.embeddings._base import parse_purpose
from crossmodal_search.embeddings._media import INLINE_LIMIT_BYTES, prepare_image
from crossmodal_search.embeddings._nova_wire import (
    DETAIL_LEVELS,
    TRUNCATION_MODES,
    DetailLevel,
    TruncationMode,
    build_request,
    check_dimension,
    check_inline_text,
    choice,
    image_payload,
    text_payload,
)
from crossmodal_search.errors import EmbeddingJobError, InvalidInputError

if TYPE_CHECKING:
    from crossmodal_search.embeddings._protocol import ImageInput

logger = logging.getLogger(__name__)

__all__ = [
    "COMPLETED",
    "ENDED_EARLY",
    "FAILED",
    "MAX_RECORDS_PER_JOB",
    "MIN_RECORDS_PER_JOB",
    "BatchJob",
    "BatchJobStatus",
    "BatchRequest",
    "BatchResult",
    "OnRecordError",
    "RecordFailure",
    "input_digest",
    "parse_output_line",
    "record_lines",
]

#: Every status ``get_model_invocation_job`` can report (botocore 1.44.8 model).
JOB_STATUSES = (
    "Submitted",
    "Validating",
    "Scheduled",
    "InProgress",
    "Stopping",
    "Completed",
    "PartiallyCompleted",
    "Failed",
    "Stopped",
    "Expired",
)
_RUNNING = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
#: Ended with every record answered (PartiallyCompleted: some of them with an error).
COMPLETED = frozenset({"Completed", "PartiallyCompleted"})
#: Ended without (all) output: records not in the output are reported as failed.
ENDED_EARLY = frozenset({"Stopped", "Expired"})
FAILED = frozenset({"Failed"})

OnRecordError: TypeAlias = Literal["raise", "report"]

#: Bedrock's default quotas: records per batch job (min and max).
MIN_RECORDS_PER_JOB = 100
MAX_RECORDS_PER_JOB = 50_000


@dataclass(frozen=True)
class BatchRequest:
    """One input of a batch: your ``key`` and the InvokeModel body (``modelInput``)."""

    key: str
    model_input: Mapping[str, Any]

    @classmethod
    def text(
        cls,
        key: str,
        text: str,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int = 1024,
        truncation_mode: TruncationMode = "END",
    ) -> BatchRequest:
        """A text to embed (at most 50,000 characters inline; longer text: segment it)."""
        value = check_inline_text(text, f"{key}: text")
        mode = choice(truncation_mode, TRUNCATION_MODES, f"{key}: truncation_mode")
        body = build_request(
            "text",
            text_payload(value, mode),
            purpose=parse_purpose(purpose),
            dimension=check_dimension(dimension),
        )
        return cls(_check_key(key), body)

    @classmethod
    def image(
        cls,
        key: str,
        image: ImageInput,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int = 1024,
        detail_level: DetailLevel = "STANDARD_IMAGE",
        format: str | None = None,
        max_inline_bytes: int = INLINE_LIMIT_BYTES,
    ) -> BatchRequest:
        """An image to embed: bytes, a local path or PIL image (sent inline, base64) or an
        ``s3://`` URI (read by Bedrock)."""
        detail = choice(detail_level, DETAIL_LEVELS, f"{key}: detail_level")
        media = prepare_image(image, format=format, max_inline_bytes=max_inline_bytes, label=key)
        body = build_request(
            "image",
            image_payload(media, detail),
            purpose=parse_purpose(purpose),
            dimension=check_dimension(dimension),
        )
        return cls(_check_key(key), body)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"batch request keys must be non-empty strings, got {key!r}")
    return key


@dataclass(frozen=True)
class RecordFailure:
    """A batch record that produced no vector: the service's error, or missing from the output."""

    key: str
    record_id: str
    code: str
    message: str

    def describe(self) -> str:
        """One line for logs and error messages."""
        return f"{self.key} (record {self.record_id}): {self.code}: {self.message}"


@dataclass(frozen=True)
class BatchJob:
    """A submitted batch job and the keys of its records (record ``i`` has id ``R%010d``)."""

    job_arn: str
    job_name: str
    input_s3_uri: str
    output_s3_uri: str
    keys: tuple[str, ...]

    @property
    def job_id(self) -> str:
        """The last segment of the job ARN; the output folder is named after it."""
        return self.job_arn.rsplit("/", 1)[-1]

    def record_id(self, index: int) -> str:
        """The ``recordId`` of record ``index`` (11 alphanumeric characters)."""
        return f"R{index:010d}"


@dataclass(frozen=True)
class BatchJobStatus:
    """What ``get_model_invocation_job`` says about a job."""

    job_arn: str
    status: str
    message: str | None = None
    total_records: int | None = None
    processed_records: int | None = None
    success_records: int | None = None
    error_records: int | None = None

    @property
    def finished(self) -> bool:
        """True once the job can no longer change."""
        return self.status not in _RUNNING

    @classmethod
    def from_response(cls, job_arn: str, response: Mapping[str, Any]) -> BatchJobStatus:
        """The status in a ``get_model_invocation_job`` response."""

        def count(name: str) -> int | None:
            value = response.get(name)
            return int(value) if isinstance(value, int | float | str) else None

        return cls(
            job_arn=job_arn,
            status=str(response.get("status", "")),
            message=response.get("message"),
            total_records=count("totalRecordCount"),
            processed_records=count("processedRecordCount"),
            success_records=count("successRecordCount"),
            error_records=count("errorRecordCount"),
        )


@dataclass
class BatchResult:
    """Vectors by key, and every key that has none (``failures``): nothing is dropped."""

    vectors: dict[str, Vector] = field(default_factory=dict)
    failures: list[RecordFailure] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every record has a vector."""
        return not self.failures

    def merge(self, other: BatchResult) -> None:
        """Add another job's result to this one."""
        self.vectors.update(other.vectors)
        self.failures.extend(other.failures)
        self.jobs.extend(other.jobs)


def record_lines(requests: Sequence[BatchRequest]) -> list[str]:
    """The JSONL input lines of one job: record ``i`` has id ``R%010d``."""
    return [
        json.dumps(
            {"recordId": f"R{i:010d}", "modelInput": r.model_input},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        for i, r in enumerate(requests)
    ]


def input_digest(lines: Sequence[str], model_id: str) -> str:
    """What names a job's input: the same records for the same model resume the same job."""
    h = hashlib.sha256(model_id.encode())
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()[:20]


def parse_output_line(
    job: BatchJob,
    uri: str,
    lineno: int,
    line: str,
    index: Mapping[str, int],
    seen: set[int],
    result: BatchResult,
) -> None:
    """Read one ``.out`` line into ``result``: a vector, or a :class:`RecordFailure`.

    ``index`` maps record ids to positions in ``job.keys``; ``seen`` collects the positions
    answered (a line for an unknown or an already seen record is logged and ignored).
    """
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise EmbeddingJobError(
            f"{uri} line {lineno} is not JSON: {exc}", job_id=job.job_arn
        ) from exc
    record_id = str(item.get("recordId", ""))
    i = index.get(record_id)
    if i is None:
        logger.warning("%s line %d: unknown recordId %r ignored", uri, lineno, record_id)
        return
    if i in seen:
        logger.warning("%s line %d: duplicate recordId %s ignored", uri, lineno, record_id)
        return
    seen.add(i)
    key = job.keys[i]
    error = item.get("error")
    if error is not None or "modelOutput" not in item:
        error = error if isinstance(error, dict) else {"errorMessage": str(error)}
        result.failures.append(
            RecordFailure(
                key,
                record_id,
                str(error.get("errorCode", "Error")),
                str(error.get("errorMessage", "no modelOutput")),
            )
        )
        return
    try:
        embeddings = item["modelOutput"]["embeddings"]
        vector = np.asarray(embeddings[0]["embedding"], dtype=np.float32)
        expected = item.get("modelInput", {}).get("singleEmbeddingParams", {})
        dim = expected.get("embeddingDimension")
        if vector.ndim != 1 or (dim is not None and vector.shape[0] != int(dim)):
            raise ValueError(f"embedding of shape {vector.shape}, expected ({dim},)")
        if not np.all(np.isfinite(vector)) or not vector.size:
            raise ValueError("embedding has non-finite values or is empty")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        result.failures.append(
            RecordFailure(key, record_id, "InvalidModelOutput", f"{type(exc).__name__}: {exc}")
        )
        return
    result.vectors[key] = vector
