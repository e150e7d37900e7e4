"""The batch half of FakeBedrockJobs: ``CreateModelInvocationJob``, ``Get...`` and ``Stop...``.

A batch job passes through the service's pending statuses, then "runs": every JSONL record of
its input is answered by the synchronous fake (:class:`~crossmodal_search.testing.FakeBedrock`)
and written as the service writes it::

    <s3Uri>/<job id>/<input file>.out, manifest.json.out
"""

from __future__ import annotations

import json
import re
import secrets
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crossmodal_search._aws import join_s3
from crossmodal_search.testing._jobs_common import EPOCH, JobsBase
from crossmodal_search.testing._nova_schema import S3_URI, Invalid

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse

__all__ = ["BatchJobScript", "BatchJobsFake"]

_JOB_NAME = re.compile(r"^[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}$")
_ROLE_ARN = re.compile(r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$")
#: Statuses a batch job passes through before it finishes, in order.
_BATCH_PENDING = ("Submitted", "Validating", "Scheduled", "InProgress")


@dataclass(frozen=True, kw_only=True)
class BatchJobScript:
    """How the next batch job behaves.

    Attributes:
        polls_until_done: non-final statuses answered first (Submitted, Validating, Scheduled,
            InProgress, then InProgress again).
        never_finishes: always ``InProgress``.
        fail_job: the job ends ``Failed`` with this message and writes nothing.
        end_status: final status to force (e.g. ``"Stopped"``, ``"Expired"``); by default
            ``Completed``, or ``PartiallyCompleted`` when a record failed.
        failed_records: record id -> error message (written as an ``error`` line, code 400).
        missing_records: record ids left out of the output entirely.
    """

    polls_until_done: int = 3
    never_finishes: bool = False
    fail_job: str | None = None
    end_status: str | None = None
    failed_records: Mapping[str, str] = field(default_factory=dict)
    missing_records: Collection[str] = ()


@dataclass
class _BatchJob:
    arn: str
    job_id: str
    request: dict[str, Any]
    script: BatchJobScript
    polls: int = 0
    status: str = "Submitted"
    message: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


class BatchJobsFake(JobsBase):
    """The model-invocation-job operations of FakeBedrockJobs."""

    batch_jobs: dict[str, _BatchJob]
    _batch_scripts: deque[BatchJobScript]

    def _create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("jobName")
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise Invalid(f"jobName invalid: {name!r}")
        if not isinstance(body.get("roleArn"), str) or not _ROLE_ARN.match(body["roleArn"]):
            raise Invalid(f"roleArn invalid: {body.get('roleArn')!r}")
        if body.get("modelId") != self.model_id:
            raise Invalid(f"The provided model identifier is invalid: {body.get('modelId')!r}")
        inp = ((body.get("inputDataConfig") or {}).get("s3InputDataConfig") or {}).get("s3Uri")
        out = ((body.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}).get("s3Uri")
        for what, uri in (("input", inp), ("output", out)):
            if not isinstance(uri, str) or not S3_URI.match(uri):
                raise Invalid(f"{what} s3Uri invalid: {uri!r}")
        with self._lock:
            if any(j.request.get("jobName") == name for j in self.batch_jobs.values()):
                raise Invalid(f"a job named {name} already exists")
            script = self._batch_scripts.popleft() if self._batch_scripts else BatchJobScript()
            job_id = secrets.token_hex(6)
            arn = self._arn("model-invocation-job", job_id)
            self.batch_jobs[job_id] = _BatchJob(arn, job_id, body, script)
        return {"jobArn": arn}

    def _batch(self, ident: str) -> _BatchJob | None:
        return self.batch_jobs.get(ident.rsplit("/", 1)[-1])

    def _get_batch(self, request: AWSPreparedRequest, ident: str) -> AWSResponse:
        with self._lock:
            job = self._batch(ident)
            if job is None:
                return self._error(request, "ResourceNotFoundException", f"no job {ident}")
            job.polls += 1
            script = job.script
            pending = job.status in _BATCH_PENDING
            if pending and (script.never_finishes or job.polls <= script.polls_until_done):
                job.status = _BATCH_PENDING[min(job.polls - 1, len(_BATCH_PENDING) - 1)]
                if script.never_finishes and job.polls > len(_BATCH_PENDING):
                    job.status = "InProgress"
            elif pending:
                if script.fail_job is not None:
                    job.status, job.message = "Failed", script.fail_job
                else:
                    problem = self._run_batch(job)
                    if problem is not None:
                        job.status, job.message = "Failed", problem
                    elif script.end_status is not None:
                        job.status = script.end_status
                    elif job.counts.get("errorRecordCount", 0):
                        job.status = "PartiallyCompleted"
                    else:
                        job.status = "Completed"
            payload: dict[str, Any] = {
                "jobArn": job.arn,
                "jobName": job.request["jobName"],
                "modelId": job.request["modelId"],
                "roleArn": job.request["roleArn"],
                "status": job.status,
                "submitTime": EPOCH.isoformat(),
                "lastModifiedTime": EPOCH.isoformat(),
                "inputDataConfig": job.request["inputDataConfig"],
                "outputDataConfig": job.request["outputDataConfig"],
                **job.counts,
            }
            if job.message:
                payload["message"] = job.message
        return self._response(request, 200, payload, None)

    def _stop_batch(self, request: AWSPreparedRequest, ident: str) -> AWSResponse:
        with self._lock:
            job = self._batch(ident)
            if job is None:
                return self._error(request, "ResourceNotFoundException", f"no job {ident}")
            if job.status in _BATCH_PENDING:
                job.status = "Stopped"
        return self._response(request, 200, {}, None)

    def _run_batch(self, job: _BatchJob) -> str | None:
        """Process every input JSONL file and write ``<name>.out`` + ``manifest.json.out``."""
        inp = job.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        out = job.request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        files = (
            [inp] if not inp.endswith("/") else [u for u in self._list(inp) if u.endswith(".jsonl")]
        )
        if not files:
            return f"No input files found at {inp}"
        script = job.script
        total = ok = errors = 0
        for file_uri in files:
            data = self._read(file_uri)
            if data is None:
                return f"Unable to access the input file: {file_uri}"
            out_lines: list[str] = []
            for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    return f"{file_uri} line {lineno} is not valid JSON"
                total += 1
                record_id = str(record.get("recordId") or f"{total:011d}")
                if record_id in script.missing_records:
                    continue
                model_input = record.get("modelInput")
                entry: dict[str, Any] = {"recordId": record_id, "modelInput": model_input}
                message = script.failed_records.get(record_id)
                if message is None:
                    try:
                        if not isinstance(model_input, dict):
                            raise Invalid("modelInput must be a JSON object")
                        embeddings = self._single._embed(model_input)
                    except Invalid as exc:
                        message = f"Malformed input request: {exc}"
                    else:
                        for e in embeddings:
                            e["embedding"] = [round(x, 7) for x in e["embedding"]]
                        entry["modelOutput"] = {"embeddings": embeddings}
                if message is not None:
                    entry["error"] = {"errorCode": 400, "errorMessage": message}
                    errors += 1
                else:
                    ok += 1
                out_lines.append(json.dumps(entry))
            name = file_uri.rsplit("/", 1)[-1]
            self._write(
                join_s3(out, job.job_id, name + ".out"),
                ("\n".join(out_lines) + "\n").encode(),
                "application/jsonl",
            )
        job.counts = {
            "totalRecordCount": total,
            "processedRecordCount": ok + errors,
            "successRecordCount": ok,
            "errorRecordCount": errors,
        }
        self._write(
            join_s3(out, job.job_id, "manifest.json.out"),
            json.dumps({**job.counts, "inputTokenCount": 0, "outputTokenCount": 0}).encode(),
            "application/json",
        )
        return None
