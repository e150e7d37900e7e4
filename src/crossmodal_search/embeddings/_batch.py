"""Bedrock batch inference for large catalogs: many SINGLE_EMBEDDING requests as one job.

A batch job reads JSONL records ``{"recordId": ..., "modelInput": <InvokeModel body>}`` from S3
and writes ``{"recordId", "modelInput", "modelOutput" | "error"}`` lines to
``<output s3Uri>/<job id>/<input file>.out`` (plus ``manifest.json.out``), at about half the
on-demand price. :class:`BatchEmbeddingJobs` writes the input, submits
``create_model_invocation_job`` (bedrock control plane), polls ``get_model_invocation_job`` and
parses the output back into vectors keyed by *your* keys; every record that failed or is missing
from the output is reported. Jobs are content-addressed under ``work_s3_uri``: running the same
requests again resumes the job already submitted instead of paying twice.

Example::

    jobs = BatchEmbeddingJobs(bedrock, s3, role_arn=ROLE, work_s3_uri="s3://my-bucket/batch/")
    result = jobs.run([BatchRequest.text("t-1", "red dress"), ...])
    result.vectors["t-1"], result.failures
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from crossmodal_search._aws import (
    DEFAULT_RETRY_POLICY,
    RetryPolicy,
    call_aws,
    join_s3,
    parse_s3_uri,
)
from crossmodal_search._types import NOVA_MODEL_ID
from crossmodal_search.embeddings._batch_wire import (
    COMPLETED,
    ENDED_EARLY,
    FAILED,
    MAX_RECORDS_PER_JOB,
    MIN_RECORDS_PER_JOB,
    BatchJob,
    BatchJobStatus,
    BatchRequest,
    BatchResult,
    OnRecordError,
    RecordFailure,
    input_digest,
    parse_output_line,
    record_lines,
)
from crossmodal_search.embeddings._jobs import JobRunner, first_failures
from crossmodal_search.embeddings._segments import check_s3_uri
from crossmodal_search.errors import (
    ConfigurationError,
    EmbeddingJobError,
    InvalidInputError,
    ResourceNotFoundError,
)

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

# The records are re-exported: this module stays the one place to import batch names from.
__all__ = [
    "BatchEmbeddingJobs",
    "BatchJob",
    "BatchJobStatus",
    "BatchRequest",
    "BatchResult",
    "RecordFailure",
]

#: The key manifest next to a job's input makes a rerun of the same records resume that job.
_MANIFEST_SUFFIX = ".keys.json"


class BatchEmbeddingJobs(JobRunner["BedrockClient"]):
    """Embed many inputs with Bedrock batch inference (``create_model_invocation_job``).

    Args:
        client: a ``bedrock`` (control plane) client; built with the SDK's config when ``None``.
        s3_client: an ``s3`` client for the input and output files; built when ``None``.
        role_arn: the service role Bedrock assumes to read the input and write the output.
        work_s3_uri: S3 prefix for inputs (``input/``), outputs (``output/``) and the key
            manifests that make jobs resumable.
        model_id: the Nova model id.
        retry_policy: retries of each AWS call (the only retry layer).
        max_records_per_job / min_records_per_job: Bedrock's per-job quotas (defaults 50,000
            and 100); bigger inputs are split into balanced jobs, smaller ones are refused
            before any call (use the synchronous embedder for them).
        poll_interval, max_poll_interval, timeout: polling (defaults 30 s, 10 min, 24 h).
        timeout_hours: ``timeoutDurationInHours`` of the job itself (service default if None).
        sleep, clock: injectable for tests.
    """

    def __init__(
        self,
        client: BedrockClient | None = None,
        s3_client: S3Client | None = None,
        *,
        role_arn: str,
        work_s3_uri: str,
        session: boto3.Session | None = None,
        region_name: str | None = None,
        config: Config | None = None,
        model_id: str = NOVA_MODEL_ID,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        max_records_per_job: int = MAX_RECORDS_PER_JOB,
        min_records_per_job: int = MIN_RECORDS_PER_JOB,
        poll_interval: float = 30.0,
        max_poll_interval: float = 600.0,
        timeout: float = 24 * 3600.0,
        timeout_hours: int | None = None,
        job_name_prefix: str = "crossmodal",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            not isinstance(role_arn, str)
            or not role_arn.startswith("arn:aws")
            or ":role/" not in role_arn
        ):
            raise ConfigurationError(f"role_arn must be an IAM role ARN, got {role_arn!r}")
        try:
            check_s3_uri(work_s3_uri, what="work_s3_uri")
        except InvalidInputError as exc:
            raise ConfigurationError(str(exc)) from None
        if not 1 <= min_records_per_job <= max_records_per_job:
            raise ConfigurationError("need 1 <= min_records_per_job <= max_records_per_job")
        if timeout_hours is not None and not 24 <= timeout_hours <= 168:
            raise ConfigurationError("timeout_hours must be within 24-168")
        if not job_name_prefix.isalnum():
            raise ConfigurationError("job_name_prefix must be alphanumeric")
        super().__init__(
            "bedrock",
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
        self.role_arn = role_arn
        self.work_s3_uri = work_s3_uri.rstrip("/")
        self.model_id = model_id
        self.max_records_per_job = max_records_per_job
        self.min_records_per_job = min_records_per_job
        self.timeout_hours = timeout_hours
        self.job_name_prefix = job_name_prefix

    # -- submit --------------------------------------------------------------------------

    def _chunks(self, requests: Sequence[BatchRequest]) -> list[Sequence[BatchRequest]]:
        n = len(requests)
        jobs = math.ceil(n / self.max_records_per_job)
        size = math.ceil(n / jobs)
        return [requests[i : i + size] for i in range(0, n, size)]

    def _check(self, requests: Sequence[BatchRequest]) -> None:
        if isinstance(requests, BatchRequest) or not all(
            isinstance(r, BatchRequest) for r in requests
        ):
            raise InvalidInputError("requests must be a sequence of BatchRequest")
        keys = [r.key for r in requests]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise InvalidInputError(f"batch request key {dup!r} appears twice")
        if len(requests) < self.min_records_per_job:
            raise InvalidInputError(
                f"{len(requests)} records is below the {self.min_records_per_job}-record minimum "
                "of a Bedrock batch job; embed them with the synchronous embedder"
            )

    def submit(self, requests: Sequence[BatchRequest], *, resume: bool = True) -> list[BatchJob]:
        """Write the inputs to S3 and create one job per chunk of ``max_records_per_job``.

        With ``resume`` (default), a chunk whose identical input already has a job that is
        running or finished is not submitted again: that job is returned instead.

        Raises:
            InvalidInputError: duplicate keys, or fewer records than a job's minimum (before
                any call).
        """
        self._check(requests)
        jobs: list[BatchJob] = []
        for chunk in self._chunks(requests):
            lines = record_lines(chunk)
            digest = input_digest(lines, self.model_id)
            keys = tuple(r.key for r in chunk)
            if resume:
                found = self._existing(digest, keys)
                if found is not None:
                    logger.info("batch input %s already submitted as %s", digest, found.job_arn)
                    jobs.append(found)
                    continue
            jobs.append(self._create(digest, lines, keys))
        return jobs

    def _manifest_uri(self, digest: str) -> str:
        return join_s3(self.work_s3_uri, "input", digest + _MANIFEST_SUFFIX)

    def _existing(self, digest: str, keys: tuple[str, ...]) -> BatchJob | None:
        try:
            raw = self._read(self._manifest_uri(digest))
        except ResourceNotFoundError:
            return None
        manifest = json.loads(raw)
        job = BatchJob(
            job_arn=manifest["jobArn"],
            job_name=manifest["jobName"],
            input_s3_uri=manifest["inputS3Uri"],
            output_s3_uri=manifest["outputS3Uri"],
            keys=tuple(manifest["keys"]),
        )
        if job.keys != keys:  # same records under other keys: a new job keeps keys honest
            return None
        status = self.status(job)
        if status.status in FAILED or status.status in ENDED_EARLY:
            logger.info("previous job %s is %s: submitting again", job.job_arn, status.status)
            return None
        return job

    def _create(self, digest: str, lines: list[str], keys: tuple[str, ...]) -> BatchJob:
        input_uri = join_s3(self.work_s3_uri, "input", digest + ".jsonl")
        output_uri = join_s3(self.work_s3_uri, "output") + "/"
        self._write(
            input_uri,
            ("\n".join(lines) + "\n").encode("utf-8"),
            content_type="application/jsonl",
        )
        # Job names are unique per account: a random suffix keeps resubmissions distinct.
        name = f"{self.job_name_prefix}-{digest}-{secrets.token_hex(4)}"
        kwargs: dict[str, Any] = {
            "jobName": name,
            "roleArn": self.role_arn,
            "modelId": self.model_id,
            "inputDataConfig": {
                "s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}
            },
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}},
        }
        if self.timeout_hours is not None:
            kwargs["timeoutDurationInHours"] = self.timeout_hours
        response = call_aws(
            "bedrock:CreateModelInvocationJob",
            lambda: self._client.create_model_invocation_job(**kwargs),
            policy=self.retry_policy,
        )
        job = BatchJob(str(response["jobArn"]), name, input_uri, output_uri, keys)
        self._write(
            self._manifest_uri(digest),
            json.dumps(
                {
                    "jobArn": job.job_arn,
                    "jobName": name,
                    "inputS3Uri": input_uri,
                    "outputS3Uri": output_uri,
                    "keys": list(keys),
                }
            ).encode(),
            content_type="application/json",
        )
        logger.info("submitted batch job %s with %d records", job.job_arn, len(keys))
        return job

    # -- poll ----------------------------------------------------------------------------

    def status(self, job: BatchJob) -> BatchJobStatus:
        """One ``get_model_invocation_job`` call."""
        resp = call_aws(
            "bedrock:GetModelInvocationJob",
            lambda: self._client.get_model_invocation_job(jobIdentifier=job.job_arn),
            policy=self.retry_policy,
        )
        return BatchJobStatus.from_response(job.job_arn, resp)

    def wait(self, job: BatchJob, *, timeout: float | None = None) -> BatchJobStatus:
        """Poll until the job ends (backoff x2 per poll up to ``max_poll_interval``, jittered).

        Raises:
            EmbeddingJobError: the job ``Failed``.
            JobTimeoutError: still running after ``timeout`` seconds.
        """
        final = self._poll(
            lambda: self.status(job), what="batch job", job_id=job.job_arn, timeout=timeout
        )
        if final.status in FAILED:
            raise EmbeddingJobError(
                f"batch job {job.job_arn} failed: {final.message or 'no message'}",
                job_id=job.job_arn,
                status=final.status,
            )
        return final

    # -- results -------------------------------------------------------------------------

    def fetch_results(
        self,
        job: BatchJob,
        *,
        status: BatchJobStatus | None = None,
        on_record_error: OnRecordError = "report",
    ) -> BatchResult:
        """Parse the job's ``.jsonl.out`` files into vectors keyed by the requests' keys.

        Records with an ``error`` line, an unusable ``modelOutput``, or no line at all (a job
        ``Stopped`` or ``Expired`` part way) become :class:`RecordFailure` entries.

        Raises:
            EmbeddingJobError: the job is not finished, or has no output file; with
                ``on_record_error="raise"`` also when any record failed (``failures`` lists each).
        """
        st = status or self.status(job)
        if st.status not in COMPLETED and st.status not in ENDED_EARLY:
            raise EmbeddingJobError(
                f"batch job {job.job_arn} is {st.status}: no results to read",
                job_id=job.job_arn,
                status=st.status,
            )
        index = {job.record_id(i): i for i in range(len(job.keys))}
        result = BatchResult(jobs=[job.job_arn])
        seen: set[int] = set()
        files = self._output_files(job)
        if not files and st.status in COMPLETED:
            raise EmbeddingJobError(
                f"batch job {job.job_arn} is {st.status} but has no .out file under "
                f"{join_s3(job.output_s3_uri, job.job_id)}/",
                job_id=job.job_arn,
                status=st.status,
            )
        for uri in files:
            text = self._read(uri).decode("utf-8")
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                parse_output_line(job, uri, lineno, line, index, seen, result)
        for i, key in enumerate(job.keys):
            if i not in seen:
                result.failures.append(
                    RecordFailure(
                        key,
                        job.record_id(i),
                        "MissingFromOutput",
                        f"no output line (job {st.status})",
                    )
                )
        if result.failures:
            lines = [f.describe() for f in result.failures]
            logger.warning(
                "batch job %s: %d vectors, %d records failed: %s",
                job.job_id,
                len(result.vectors),
                len(lines),
                first_failures(lines),
            )
            if on_record_error == "raise":
                raise EmbeddingJobError(
                    f"batch job {job.job_arn}: {len(lines)} of {len(job.keys)} records failed: "
                    + first_failures(lines),
                    job_id=job.job_arn,
                    status=st.status,
                    failures=lines,
                )
        return result

    def _output_files(self, job: BatchJob) -> list[str]:
        bucket, _, listed = self._job_files(job.output_s3_uri, job.job_id)
        input_name = PurePosixPath(parse_s3_uri(job.input_s3_uri)[1]).name
        keys = [
            k for k in listed if k.endswith(".out") and PurePosixPath(k).name != "manifest.json.out"
        ]
        # One .out file per input file; ours is named after our input, but take any .out the
        # job wrote rather than guess (unknown record ids are reported, not trusted).
        keys.sort(key=lambda k: (PurePosixPath(k).name != input_name + ".out", k))
        return [f"s3://{bucket}/{k}" for k in keys]

    # -- all in one ----------------------------------------------------------------------

    def run(
        self,
        requests: Sequence[BatchRequest],
        *,
        resume: bool = True,
        timeout: float | None = None,
        on_record_error: OnRecordError = "report",
    ) -> BatchResult:
        """Submit (or resume), wait for every job, and merge their results.

        Jobs ``Stopped`` or ``Expired`` part way contribute what they wrote; their other
        records are reported in ``failures``.
        """
        jobs = self.submit(requests, resume=resume)
        merged = BatchResult()
        for job in jobs:
            status = self.wait(job, timeout=timeout)
            merged.merge(self.fetch_results(job, status=status, on_record_error="report"))
        if on_record_error == "raise" and merged.failures:
            lines = [f.describe() for f in merged.failures]
            raise EmbeddingJobError(
                f"{len(lines)} of {len(requests)} batch records failed: " + first_failures(lines),
                job_id=",".join(merged.jobs),
                status="PartiallyCompleted",
                failures=lines,
            )
        return merged
