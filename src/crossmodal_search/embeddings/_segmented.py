"""Nova segmented embeddings for long video, audio and text stored in S3.

Bedrock's asynchronous invocation (``start_async_invoke``, which is not asyncio) with
``taskType="SEGMENTED_EMBEDDING"`` splits a long input into segments (seconds of media,
characters of text) and writes one embedding per segment to S3::

    <output s3Uri>/<job id>/segmented-embedding-result.json   -> embeddingResults[].outputFileUri
    <output s3Uri>/<job id>/embedding-<modality>.jsonl         -> one segment per line

:class:`SegmentedEmbeddingJobs` submits jobs, polls them with capped, jittered backoff and a
timeout, and reads the results back by following each ``outputFileUri`` (file names differ
between modalities and embedding modes, so none is hard-coded). Every AWS call goes through
:func:`crossmodal_search._aws.call_aws`; request bodies and the output files are built and
parsed in :mod:`crossmodal_search.embeddings._segmented_wire`.

Example::

    jobs = SegmentedEmbeddingJobs(bedrock_runtime, s3, dimension=1024)
    job = jobs.start_video("s3://media/p1/demo.mp4", output_s3_uri="s3://media/embeddings/")
    jobs.wait(job)
    result = jobs.fetch_results(job)          # SegmentedResult, 5 s segments by default
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from crossmodal_search._aws import DEFAULT_RETRY_POLICY, RetryPolicy, call_aws
from crossmodal_search._types import NOVA_DIMENSIONS, NOVA_MODEL_ID, EmbeddingPurpose, PurposeLike
from crossmodal_search.embeddings._base import check_text, parse_purpose
from crossmodal_search.embeddings._jobs import JobRunner, first_failures
from crossmodal_search.embeddings._media import AUDIO_FORMATS, VIDEO_FORMATS, S3Source
from crossmodal_search.embeddings._nova_wire import (
    TRUNCATION_MODES,
    VIDEO_MODES,
    TruncationMode,
    VideoEmbeddingMode,
    check_dimension,
)
from crossmodal_search.embeddings._segmented_wire import (
    RESULT_FILE_NAME,
    Modality,
    OnSegmentError,
    SegmentedJob,
    SegmentedJobStatus,
    media_format,
    parse_result,
    segmented_request,
)
from crossmodal_search.embeddings._segments import (
    SYNC_TEXT_LIMIT_CHARS,
    Segment,
    SegmentationConfig,
    SegmentedResult,
    check_s3_uri,
)
from crossmodal_search.errors import ConfigurationError, EmbeddingJobError, InvalidInputError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_s3 import S3Client

    from crossmodal_search.embeddings._protocol import Embedder

logger = logging.getLogger(__name__)

__all__ = ["SegmentedEmbeddingJobs", "embed_text_document"]


class SegmentedEmbeddingJobs(JobRunner["BedrockRuntimeClient"]):
    """Submit, wait for and read Nova segmented-embedding jobs (video, audio, long text).

    The jobs are Bedrock asynchronous invocations (``start_async_invoke``); the methods block
    (there is no asyncio twin).

    Args:
        client: a ``bedrock-runtime`` client; built with the SDK's config when ``None``.
        s3_client: an ``s3`` client for the result files (and text uploads); built when ``None``.
        model_id: the Nova model id.
        dimension: 256, 384, 1024 or 3072 (default 1024).
        retry_policy: retries of each AWS call (the only retry layer).
        poll_interval: first wait between status polls, seconds (default 5); doubles each poll.
        max_poll_interval: cap of one wait, seconds (default 60).
        timeout: default :meth:`wait` limit in seconds (default 3600).
        on_segment_error: default of :meth:`fetch_results` (``"raise"``).
        sleep, clock: injectable for tests (an instant fake clock).
    """

    def __init__(
        self,
        client: BedrockRuntimeClient | None = None,
        s3_client: S3Client | None = None,
        *,
        session: boto3.Session | None = None,
        region_name: str | None = None,
        config: Config | None = None,
        model_id: str = NOVA_MODEL_ID,
        dimension: int = 1024,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        timeout: float = 3600.0,
        on_segment_error: OnSegmentError = "raise",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if dimension not in NOVA_DIMENSIONS:
            raise ConfigurationError(f"dimension must be one of {NOVA_DIMENSIONS}, got {dimension}")
        if on_segment_error not in ("raise", "report"):
            raise ConfigurationError(
                f"on_segment_error must be 'raise' or 'report', got {on_segment_error!r}"
            )
        super().__init__(
            "bedrock-runtime",
            client,
            s3_client,
            session=session,
            region_name=region_name,
            config=config,
            retry_policy=retry_policy,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            timeout=timeout,
            sleep=sleep,
            clock=clock,
        )
        self.model_id = model_id
        self.dimension = dimension
        self.on_segment_error: OnSegmentError = on_segment_error

    # -- submit --------------------------------------------------------------------------

    def start_video(
        self,
        s3_uri: str,
        *,
        output_s3_uri: str,
        segment_seconds: int = 5,
        embedding_mode: VideoEmbeddingMode = "AUDIO_VIDEO_COMBINED",
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        format: str | None = None,
        dimension: int | None = None,
        bucket_owner: str | None = None,
    ) -> SegmentedJob:
        """Start segmenting a video in S3 into ``segment_seconds`` (1-30) pieces.

        ``embedding_mode="AUDIO_VIDEO_SEPARATE"`` yields a VIDEO and an AUDIO vector per segment.
        The format is taken from the file extension unless ``format`` is given.
        """
        seg = SegmentationConfig(segment_seconds=segment_seconds)
        if embedding_mode not in VIDEO_MODES:
            raise InvalidInputError(f"unknown embedding_mode {embedding_mode!r}")
        params = self._media_params(s3_uri, format, "video", seg, bucket_owner)
        params["embeddingMode"] = embedding_mode
        return self._start(
            "video", s3_uri, output_s3_uri, params, seg, purpose, dimension, embedding_mode
        )

    def start_audio(
        self,
        s3_uri: str,
        *,
        output_s3_uri: str,
        segment_seconds: int = 5,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        format: str | None = None,
        dimension: int | None = None,
        bucket_owner: str | None = None,
    ) -> SegmentedJob:
        """Start segmenting audio (mp3, wav, ogg) in S3 into ``segment_seconds`` (1-30) pieces."""
        seg = SegmentationConfig(segment_seconds=segment_seconds)
        params = self._media_params(s3_uri, format, "audio", seg, bucket_owner)
        return self._start("audio", s3_uri, output_s3_uri, params, seg, purpose, dimension, None)

    def start_text(
        self,
        s3_uri: str,
        *,
        output_s3_uri: str,
        max_length_chars: int = 32_000,
        truncation_mode: TruncationMode = "END",
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        bucket_owner: str | None = None,
    ) -> SegmentedJob:
        """Start segmenting a UTF-8 text object in S3 into ``max_length_chars`` (800-50,000)
        pieces, split at word boundaries."""
        seg = SegmentationConfig(max_length_chars=max_length_chars)
        if truncation_mode not in TRUNCATION_MODES:
            raise InvalidInputError(f"unknown truncation_mode {truncation_mode!r}")
        params: dict[str, Any] = {
            "truncationMode": truncation_mode,
            "source": self._source(s3_uri, bucket_owner),
            "segmentationConfig": seg.text_payload(),
        }
        return self._start("text", s3_uri, output_s3_uri, params, seg, purpose, dimension, None)

    @staticmethod
    def _source(s3_uri: str, bucket_owner: str | None) -> dict[str, Any]:
        check_s3_uri(s3_uri, what="source")
        return dict(S3Source(s3_uri, bucket_owner=bucket_owner).to_source())

    @classmethod
    def _media_params(
        cls,
        s3_uri: str,
        format: str | None,
        modality: Literal["video", "audio"],
        seg: SegmentationConfig,
        bucket_owner: str | None,
    ) -> dict[str, Any]:
        """The ``video`` or ``audio`` object of a request (without the video's mode)."""
        formats = VIDEO_FORMATS if modality == "video" else AUDIO_FORMATS
        return {
            "format": media_format(s3_uri, format, formats, modality),
            "source": cls._source(s3_uri, bucket_owner),
            "segmentationConfig": seg.media_payload(),
        }

    def _start(
        self,
        modality: Modality,
        s3_uri: str,
        output_s3_uri: str,
        media_params: dict[str, Any],
        seg: SegmentationConfig,
        purpose: PurposeLike,
        dimension: int | None,
        embedding_mode: VideoEmbeddingMode | None,
    ) -> SegmentedJob:
        check_s3_uri(output_s3_uri, what="output_s3_uri")
        dim = self.dimension if dimension is None else check_dimension(dimension)
        purpose_value = parse_purpose(purpose).value
        model_input = segmented_request(
            modality, media_params, purpose=purpose_value, dimension=dim
        )
        response = call_aws(
            "bedrock-runtime:StartAsyncInvoke",
            lambda: self._client.start_async_invoke(
                modelId=self.model_id,
                modelInput=model_input,
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_s3_uri}},
            ),
            policy=self.retry_policy,
        )
        arn = str(response["invocationArn"])
        logger.info("started %s segmentation of %s: %s", modality, s3_uri, arn)
        return SegmentedJob(
            invocation_arn=arn,
            modality=modality,
            source_uri=s3_uri,
            output_s3_uri=output_s3_uri,
            dimension=dim,
            purpose=purpose_value,
            segmentation=seg,
            embedding_mode=embedding_mode,
        )

    # -- poll ----------------------------------------------------------------------------

    def status(self, job: SegmentedJob | str) -> SegmentedJobStatus:
        """One ``get_async_invoke`` call."""
        arn = job.invocation_arn if isinstance(job, SegmentedJob) else job
        resp = call_aws(
            "bedrock-runtime:GetAsyncInvoke",
            lambda: self._client.get_async_invoke(invocationArn=arn),
            policy=self.retry_policy,
        )
        return SegmentedJobStatus.from_response(arn, resp)

    def wait(self, job: SegmentedJob, *, timeout: float | None = None) -> SegmentedJobStatus:
        """Poll until the job completes (backoff: x2 per poll, capped, jittered).

        Raises:
            EmbeddingJobError: the job ``Failed`` (the message carries ``failureMessage``).
            JobTimeoutError: still running after ``timeout`` (default: the instance's) seconds.
        """
        limit = self.timeout if timeout is None else timeout
        if limit <= 0:
            raise InvalidInputError(f"timeout must be > 0, got {limit}")
        final = self._poll(
            lambda: self.status(job),
            what="segmented embedding job",
            job_id=job.invocation_arn,
            timeout=limit,
        )
        if final.status == "Failed":
            raise EmbeddingJobError(
                f"segmented embedding job {job.invocation_arn} for {job.source_uri} failed: "
                f"{final.failure_message or 'no failureMessage'}",
                job_id=job.invocation_arn,
                status=final.status,
            )
        return final

    # -- results -------------------------------------------------------------------------

    def fetch_results(
        self,
        job: SegmentedJob,
        *,
        on_segment_error: OnSegmentError | None = None,
        status: SegmentedJobStatus | None = None,
    ) -> SegmentedResult:
        """Read a completed job's segments from S3.

        Finds ``segmented-embedding-result.json`` under ``<output s3Uri>/<job id>/`` (the
        ``s3Uri`` the service reports may already end in the job id), follows each
        ``embeddingResults[].outputFileUri`` and parses every JSONL line into a :class:`Segment`.

        Raises:
            EmbeddingJobError: the job has not completed, the result file is missing or
                malformed, or (with ``on_segment_error="raise"``) any segment or output failed;
                ``failures`` names each one.
        """
        mode = on_segment_error or self.on_segment_error
        if mode not in ("raise", "report"):
            raise InvalidInputError(f"on_segment_error must be 'raise' or 'report', got {mode!r}")
        st = status or self.status(job)
        if st.status != "Completed":
            raise EmbeddingJobError(
                f"job {job.invocation_arn} is {st.status}, not Completed"
                + (f": {st.failure_message}" if st.failure_message else ""),
                job_id=job.invocation_arn,
                status=st.status,
            )
        result_uri = self._find_result_file(job, st.output_s3_uri or job.output_s3_uri)
        result = parse_result(job, result_uri, self._read)
        if result.ok:
            logger.info("job %s: %d segments", job.job_id, len(result.segments))
            return result
        lines = result.failure_lines()
        logger.warning(
            "job %s: %d segments ok, %d failed: %s",
            job.job_id,
            len(result.segments),
            len(lines),
            first_failures(lines),
        )
        if mode == "raise":
            raise EmbeddingJobError(
                f"job {job.invocation_arn} ({job.source_uri}) is {result.status}: "
                f"{len(result.segments)} segments ok, {len(lines)} failed: "
                + first_failures(lines)
                + " (pass on_segment_error='report' to keep the successful segments)",
                job_id=job.invocation_arn,
                status=result.status,
                failures=lines,
            )
        return result

    def _find_result_file(self, job: SegmentedJob, output_uri: str) -> str:
        # The blog says the reported s3Uri already includes the job folder; the docs say the
        # files go under <s3Uri>/<job-id>/. Look in the job folder either way.
        bucket, prefix, keys = self._job_files(output_uri, job.job_id)
        hits = sorted((k for k in keys if PurePosixPath(k).name == RESULT_FILE_NAME), key=len)
        if hits:
            return f"s3://{bucket}/{hits[0]}"
        raise job.error(
            f"job {job.invocation_arn} completed but no {RESULT_FILE_NAME} was found under "
            f"s3://{bucket}/{prefix}"
        )

    # -- one-call helpers ----------------------------------------------------------------

    def embed_video(
        self, s3_uri: str, *, output_s3_uri: str, timeout: float | None = None, **kwargs: Any
    ) -> SegmentedResult:
        """:meth:`start_video`, :meth:`wait` and :meth:`fetch_results` in one call."""
        job = self.start_video(s3_uri, output_s3_uri=output_s3_uri, **kwargs)
        return self.fetch_results(job, status=self.wait(job, timeout=timeout))

    def embed_audio(
        self, s3_uri: str, *, output_s3_uri: str, timeout: float | None = None, **kwargs: Any
    ) -> SegmentedResult:
        """:meth:`start_audio`, :meth:`wait` and :meth:`fetch_results` in one call."""
        job = self.start_audio(s3_uri, output_s3_uri=output_s3_uri, **kwargs)
        return self.fetch_results(job, status=self.wait(job, timeout=timeout))

    def embed_long_text(
        self,
        text: str,
        *,
        staging_s3_uri: str,
        output_s3_uri: str,
        max_length_chars: int = 32_000,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        timeout: float | None = None,
    ) -> SegmentedResult:
        """Embed plain text longer than the synchronous limit through segmentation.

        The text is uploaded to ``staging_s3_uri`` (an object URI) and segmented by Nova;
        text within :data:`SYNC_TEXT_LIMIT_CHARS` should go through the synchronous embedder.
        """
        check_text(text)
        SegmentationConfig(max_length_chars=max_length_chars)
        check_s3_uri(staging_s3_uri, what="staging_s3_uri")
        check_s3_uri(output_s3_uri, what="output_s3_uri")
        if len(text) <= SYNC_TEXT_LIMIT_CHARS:
            logger.info("text of %d chars fits a synchronous call; segmenting it anyway", len(text))
        self._write(staging_s3_uri, text.encode("utf-8"), content_type="text/plain; charset=utf-8")
        job = self.start_text(
            staging_s3_uri,
            output_s3_uri=output_s3_uri,
            max_length_chars=max_length_chars,
            purpose=purpose,
        )
        return self.fetch_results(job, status=self.wait(job, timeout=timeout))


def embed_text_document(
    text: str,
    *,
    embedder: Embedder,
    jobs: SegmentedEmbeddingJobs | None = None,
    staging_s3_uri: str | None = None,
    output_s3_uri: str | None = None,
    max_length_chars: int = 32_000,
    purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
) -> SegmentedResult:
    """Embed a plain-text document: one synchronous call when it fits, segments when not.

    Text of at most :data:`SYNC_TEXT_LIMIT_CHARS` characters becomes a single segment from the
    embedder's ``embed_text``; longer text goes through Nova's asynchronous segmentation
    (``jobs``, ``staging_s3_uri`` and ``output_s3_uri`` are then required).

    Raises:
        InvalidInputError: empty text, or long text without the async settings (no call made).
    """
    check_text(text)
    if len(text) <= SYNC_TEXT_LIMIT_CHARS:
        vector = np.asarray(embedder.embed_text(text, purpose=purpose), dtype=np.float32)
        segment = Segment(vector.reshape(-1), 0, 0.0, float(len(text)), "chars", "TEXT")
        return SegmentedResult((segment,), embedding_dimension=int(vector.size))
    if jobs is None or staging_s3_uri is None or output_s3_uri is None:
        raise InvalidInputError(
            f"text of {len(text)} characters is over the synchronous limit of "
            f"{SYNC_TEXT_LIMIT_CHARS}: pass jobs=, staging_s3_uri= and output_s3_uri= to "
            "segment it asynchronously"
        )
    return jobs.embed_long_text(
        text,
        staging_s3_uri=staging_s3_uri,
        output_s3_uri=output_s3_uri,
        max_length_chars=max_length_chars,
        purpose=purpose,
    )
