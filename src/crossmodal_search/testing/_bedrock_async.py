"""A fake of Bedrock's asynchronous and batch jobs for Nova embeddings, at the HTTP boundary.

:class:`FakeBedrockJobs` answers, through botocore ``before-send`` handlers on real clients:

* ``bedrock-runtime``: ``StartAsyncInvoke`` (``SEGMENTED_EMBEDDING``) and ``GetAsyncInvoke``;
* ``bedrock``: ``CreateModelInvocationJob``, ``GetModelInvocationJob`` and
  ``StopModelInvocationJob``.

Jobs read their inputs from, and write their results to, S3 through an ``s3`` client (moto's
``mock_aws`` in tests), laid out as the service documents::

    async: <s3Uri>/<job id>/segmented-embedding-result.json, embedding-<modality>.jsonl,
           manifest.json
    batch: <s3Uri>/<job id>/<input file>.out, manifest.json.out

Each job can be scripted (:class:`AsyncJobScript`, :class:`BatchJobScript`): polls before it
finishes, a job that never finishes, a failed job, failed segments (``PARTIAL_SUCCESS``, with
the ``FAILURE`` or the ``FAILED`` status string), a whole output failing, failed or missing batch
records, and an ``s3Uri`` reported with the job folder already appended.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import unquote

from crossmodal_search._aws import join_s3, parse_s3_uri
from crossmodal_search._types import NOVA_DIMENSIONS, NOVA_MODEL_ID, EmbeddingPurpose
from crossmodal_search.testing._bedrock import ERROR_STATUS, FakeBedrock, _Invalid
from crossmodal_search.testing._wire import json_response, request_bytes

if TYPE_CHECKING:
    import boto3
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse
    from botocore.config import Config
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_s3 import S3Client

    from crossmodal_search.embeddings._protocol import Embedder

__all__ = ["AsyncJobScript", "BatchJobScript", "FakeBedrockJobs", "FakeMedia"]

_PURPOSES = frozenset(p.value for p in EmbeddingPurpose)
_AUDIO_FORMATS = frozenset({"mp3", "wav", "ogg"})
_VIDEO_FORMATS = frozenset({"mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"})
_S3_URI = re.compile(r"^s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?$")
_JOB_NAME = re.compile(r"^[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}$")
_ROLE_ARN = re.compile(r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$")
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: A Bedrock client the fake answers: ``bedrock-runtime`` (async jobs) or ``bedrock`` (batch).
_JobClient = TypeVar("_JobClient", "BedrockRuntimeClient", "BedrockClient")
#: Statuses a batch job passes through before it finishes, in order.
_BATCH_PENDING = ("Submitted", "Validating", "Scheduled", "InProgress")


@dataclass(frozen=True)
class FakeMedia:
    """A long audio or video object the fake can "segment".

    ``describe(start, end)`` says what happens in a segment; the fake embeds that text as the
    segment's vector (with the fake's embedder), so a text query about it finds the segment.
    """

    duration_seconds: float
    describe: Callable[[float, float], str] | None = None
    texts: tuple[str, ...] = ()

    def segment_text(self, index: int, start: float, end: float) -> str:
        """What segment ``index`` (``start``-``end`` seconds) shows."""
        if self.texts:
            return self.texts[min(index, len(self.texts) - 1)]
        if self.describe is not None:
            return self.describe(start, end)
        return f"media from {start:g} to {end:g} seconds"


@dataclass(frozen=True, kw_only=True)
class AsyncJobScript:
    """How the next async job behaves.

    Attributes:
        polls_until_done: ``GetAsyncInvoke`` answers ``InProgress`` this many times first.
        never_finishes: always ``InProgress``.
        fail_job: the job ends ``Failed`` with this ``failureMessage``.
        failed_segments: segment index -> ``failureReason`` (the output becomes
            ``PARTIAL_SUCCESS``; every segment failed makes it a failure).
        failure_status: the status string failed segments/outputs get (``"FAILURE"`` as
            documented, or ``"FAILED"``).
        fail_output: this ``failureReason`` fails the whole output: no JSONL file at all.
        output_uri_includes_job_id: ``GetAsyncInvoke`` reports ``<s3Uri>/<job id>``.
    """

    polls_until_done: int = 1
    never_finishes: bool = False
    fail_job: str | None = None
    failed_segments: Mapping[int, str] = field(default_factory=dict)
    failure_status: str = "FAILURE"
    fail_output: str | None = None
    output_uri_includes_job_id: bool = False


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
class _AsyncJob:
    arn: str
    job_id: str
    model_input: dict[str, Any]
    output_uri: str
    script: AsyncJobScript
    polls: int = 0
    status: str = "InProgress"
    failure_message: str | None = None
    written: bool = False


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


def split_text(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Greedy word-boundary segmentation: ``[(start, end_exclusive), ...]`` covering ``text``."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + max_chars, n)
        if end < n:
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut > start:
                end = cut
        spans.append((start, end))
        start = end
        while start < n and text[start].isspace():
            start += 1
    return spans


class FakeBedrockJobs:
    """Thread-safe fake of Nova async invocations and Bedrock batch inference jobs.

    Args:
        embedder: computes vectors (default ``OfflineEmbedder``): segment vectors embed the
            segment's description (media) or text (text), batch records embed their input.
        s3_client: where inputs are read and results written (default: a client built on first
            use, which moto's ``mock_aws`` answers in tests).
        region_name, account_id: used in the ARNs the fake makes up.

    Attributes:
        requests: ``(operation, parsed body)`` for every request received, in order.
        calls: a Counter of requests per operation.

    Example::

        with mock_aws():
            fake = FakeBedrockJobs()
            fake.add_media("s3://media/p1.mp4", 120, lambda a, b: f"scene {a:g}-{b:g}s")
            runtime, bedrock = fake.client("bedrock-runtime"), fake.client("bedrock")
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        s3_client: S3Client | None = None,
        region_name: str = "us-east-1",
        account_id: str = "123456789012",
        model_id: str = NOVA_MODEL_ID,
    ) -> None:
        self._single = FakeBedrock(embedder=embedder, model_id=model_id)
        self._embedder = embedder
        self._s3 = s3_client
        self.region_name = region_name
        self.account_id = account_id
        self.model_id = model_id
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.calls: Counter[str] = Counter()
        self.media: dict[str, FakeMedia] = {}
        self.async_jobs: dict[str, _AsyncJob] = {}
        self.batch_jobs: dict[str, _BatchJob] = {}
        self._async_scripts: deque[AsyncJobScript] = deque()
        self._batch_scripts: deque[BatchJobScript] = deque()
        self._failures: deque[tuple[str | None, str, str]] = deque()
        self._lock = threading.RLock()
        self._session: boto3.Session | None = None

    # ----------------------------------------------------------------- wiring

    @overload
    def client(
        self, service: Literal["bedrock-runtime"] = ..., *, config: Config | None = None
    ) -> BedrockRuntimeClient: ...

    @overload
    def client(
        self, service: Literal["bedrock"], *, config: Config | None = None
    ) -> BedrockClient: ...

    @overload
    def client(
        self, service: str, *, config: Config | None = None
    ) -> BedrockRuntimeClient | BedrockClient: ...

    def client(
        self, service: str = "bedrock-runtime", *, config: Config | None = None
    ) -> BedrockRuntimeClient | BedrockClient:
        """A real boto3 ``bedrock-runtime`` or ``bedrock`` client (dummy credentials, botocore
        retries off) whose job calls this fake answers."""
        import boto3
        from botocore.config import Config

        if service not in ("bedrock-runtime", "bedrock"):
            raise ValueError(f"service must be 'bedrock-runtime' or 'bedrock', got {service!r}")
        # botocore's ``max_attempts`` counts retries; ``total_max_attempts`` counts requests.
        ours = Config(retries={"total_max_attempts": 1, "mode": "standard"})
        if self._session is None:  # one session per fake: its model cache makes clients cheap
            self._session = boto3.session.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name=self.region_name,
            )
        merged = ours.merge(config) if config is not None else ours
        if service == "bedrock":
            return self.attach(self._session.client("bedrock", config=merged))
        return self.attach(self._session.client("bedrock-runtime", config=merged))

    def attach(self, client: _JobClient) -> _JobClient:
        """Answer ``client``'s async-invoke or model-invocation-job calls; returns the client.

        moto's global handler is removed from this one client: under ``mock_aws`` it would
        otherwise answer (or reject as not implemented) the same Bedrock requests.
        """
        try:
            from moto.core.models import botocore_stubber
        except ImportError:  # pragma: no cover - moto is a dev dependency
            pass
        else:
            client.meta.events.unregister("before-send", botocore_stubber)  # type: ignore[arg-type]
        service = client.meta.service_model.service_id.hyphenize()
        ops = {
            "bedrock-runtime": ("StartAsyncInvoke", "GetAsyncInvoke"),
            "bedrock": (
                "CreateModelInvocationJob",
                "GetModelInvocationJob",
                "StopModelInvocationJob",
            ),
        }.get(service)
        if ops is None:
            raise ValueError(f"cannot attach to a {service} client")
        for op in ops:
            client.meta.events.register(
                f"before-send.{service}.{op}",
                self._handler(op),  # type: ignore[arg-type]  # before-send handlers answer
                unique_id=f"crossmodal-fake-jobs-{op}-{id(self)}",
            )
        return client

    # ----------------------------------------------------------------- controls

    def add_media(
        self,
        s3_uri: str,
        duration_seconds: float,
        describe: Callable[[float, float], str] | Sequence[str] | None = None,
    ) -> None:
        """Declare the length and content of a media object (upload the object itself to S3).

        ``describe`` is a function of ``(start, end)`` seconds, or one text per segment of the
        job's segment length (the last text repeats), or ``None`` for a generic description.
        """
        if duration_seconds <= 0:
            raise ValueError("duration_seconds must be > 0")
        if describe is None:
            media = FakeMedia(float(duration_seconds))
        elif callable(describe):
            media = FakeMedia(float(duration_seconds), describe=describe)
        else:
            texts = tuple(describe)
            if not texts:
                raise ValueError("describe needs at least one text")
            media = FakeMedia(float(duration_seconds), texts=texts)
        with self._lock:
            self.media[s3_uri] = media

    def script_async(self, *scripts: AsyncJobScript) -> None:
        """Queue behaviours for the next async jobs (default: finish after one poll)."""
        with self._lock:
            self._async_scripts.extend(scripts)

    def script_batch(self, *scripts: BatchJobScript) -> None:
        """Queue behaviours for the next batch jobs (default: finish after three polls)."""
        with self._lock:
            self._batch_scripts.extend(scripts)

    def fail_next(self, code: str, *, operation: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests (of ``operation``, or any) with AWS error ``code``."""
        with self._lock:
            self._failures.extend([(operation, code, f"injected {code}")] * times)

    # ----------------------------------------------------------------- helpers

    def _s3_client(self) -> S3Client:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client(
                "s3",
                region_name=self.region_name,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._s3

    def _embedder_(self) -> Embedder:
        if self._embedder is None:
            from crossmodal_search.embeddings._offline import OfflineEmbedder

            self._embedder = OfflineEmbedder(dimension=3072)
        return self._embedder

    def _read(self, uri: str) -> bytes | None:
        from botocore.exceptions import ClientError

        bucket, key = parse_s3_uri(uri)
        try:
            data: bytes = self._s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None
        return data

    def _write(self, uri: str, data: bytes, content_type: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self._s3_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def _list(self, uri: str) -> list[str]:
        bucket, prefix = parse_s3_uri(uri)
        keys: list[str] = []
        for page in (
            self._s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix)
        ):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return [f"s3://{bucket}/{k}" for k in keys]

    def _vector(self, text: str, dim: int) -> list[float]:
        vec = self._embedder_().embed_text(text, dimension=dim)
        return [round(float(x), 7) for x in vec]

    @staticmethod
    def _response(
        request: AWSPreparedRequest, status: int, payload: Mapping[str, Any], code: str | None
    ) -> AWSResponse:
        return json_response(request.url, status, payload, error_code=code)

    def _error(self, request: AWSPreparedRequest, code: str, message: str) -> AWSResponse:
        status = {"ConflictException": 400}.get(code, ERROR_STATUS.get(code, 400))
        return self._response(request, status, {"message": message}, code)

    def _handler(self, operation: str) -> Callable[..., AWSResponse]:
        def handle(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
            raw = request_bytes(request)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"_raw": raw}
            with self._lock:
                self.requests.append((operation, body))
                self.calls[operation] += 1
                failure = next((f for f in self._failures if f[0] in (None, operation)), None)
                if failure is not None:
                    self._failures.remove(failure)
            if failure is not None:
                return self._error(request, failure[1], failure[2])
            # The ARN is one percent-encoded path segment: split first, then decode.
            path = request.url.split("?", 1)[0]
            try:
                if operation == "StartAsyncInvoke":
                    return self._response(request, 200, self._start_async(body), None)
                if operation == "GetAsyncInvoke":
                    arn = unquote(path.split("/async-invoke/", 1)[1].split("/", 1)[0])
                    return self._get_async(request, arn)
                if operation == "CreateModelInvocationJob":
                    return self._response(request, 200, self._create_batch(body), None)
                ident = unquote(path.split("/model-invocation-job/", 1)[1].split("/", 1)[0])
                if operation == "GetModelInvocationJob":
                    return self._get_batch(request, ident)
                return self._stop_batch(request, ident)
            except _Invalid as exc:
                return self._error(request, "ValidationException", str(exc))

        return handle

    # ----------------------------------------------------------------- async invoke

    def _start_async(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("modelId") != self.model_id:
            raise _Invalid(f"The provided model identifier is invalid: {body.get('modelId')!r}")
        model_input = body.get("modelInput")
        if not isinstance(model_input, dict):
            raise _Invalid("modelInput must be a JSON object")
        self._validate_segmented(model_input)
        out = (body.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}
        uri = out.get("s3Uri")
        if not isinstance(uri, str) or not _S3_URI.match(uri):
            raise _Invalid(f"outputDataConfig.s3OutputDataConfig.s3Uri invalid: {uri!r}")
        job_id = secrets.token_hex(6)
        arn = f"arn:aws:bedrock:{self.region_name}:{self.account_id}:async-invoke/{job_id}"
        with self._lock:
            script = self._async_scripts.popleft() if self._async_scripts else AsyncJobScript()
            self.async_jobs[arn] = _AsyncJob(arn, job_id, model_input, uri, script)
        return {"invocationArn": arn}

    @staticmethod
    def _validate_segmented(mi: dict[str, Any]) -> None:
        allowed = {"schemaVersion", "taskType", "segmentedEmbeddingParams"}
        if set(mi) - allowed:
            raise _Invalid(f"modelInput: extraneous key(s) {sorted(set(mi) - allowed)}")
        if mi.get("schemaVersion", "nova-multimodal-embed-v1") != "nova-multimodal-embed-v1":
            raise _Invalid("modelInput.schemaVersion invalid")
        if mi.get("taskType") != "SEGMENTED_EMBEDDING":
            raise _Invalid("taskType must be SEGMENTED_EMBEDDING for StartAsyncInvoke")
        params = mi.get("segmentedEmbeddingParams")
        if not isinstance(params, dict):
            raise _Invalid("segmentedEmbeddingParams is required")
        if params.get("embeddingPurpose") not in _PURPOSES:
            raise _Invalid(f"embeddingPurpose invalid: {params.get('embeddingPurpose')!r}")
        if params.get("embeddingDimension", 3072) not in NOVA_DIMENSIONS:
            raise _Invalid(f"embeddingDimension invalid: {params.get('embeddingDimension')!r}")
        modalities = [m for m in ("text", "image", "audio", "video") if m in params]
        if len(modalities) != 1:
            raise _Invalid(f"exactly one of text, image, audio, video required, got {modalities}")
        modality = modalities[0]
        spec = params[modality]
        if not isinstance(spec, dict):
            raise _Invalid(f"{modality} must be an object")
        src = spec.get("source")
        loc = src.get("s3Location") if isinstance(src, dict) else None
        if not isinstance(loc, dict) or not _S3_URI.match(str(loc.get("uri", ""))):
            raise _Invalid(f"{modality}.source: async accepts only s3Location sources")
        seg = spec.get("segmentationConfig")
        if modality == "text":
            if spec.get("truncationMode") not in ("START", "END", "NONE"):
                raise _Invalid("text.truncationMode required")
            n = seg.get("maxLengthChars") if isinstance(seg, dict) else None
            if not isinstance(n, int) or not 800 <= n <= 50_000:
                raise _Invalid(f"text.segmentationConfig.maxLengthChars must be 800-50000: {n!r}")
        elif modality in ("audio", "video"):
            formats = _AUDIO_FORMATS if modality == "audio" else _VIDEO_FORMATS
            if spec.get("format") not in formats:
                raise _Invalid(f"{modality}.format invalid: {spec.get('format')!r}")
            n = seg.get("durationSeconds") if isinstance(seg, dict) else None
            if not isinstance(n, int) or not 1 <= n <= 30:
                raise _Invalid(f"{modality}.segmentationConfig.durationSeconds must be 1-30: {n!r}")
            if modality == "video" and spec.get("embeddingMode") not in (
                "AUDIO_VIDEO_COMBINED",
                "AUDIO_VIDEO_SEPARATE",
            ):
                raise _Invalid("video.embeddingMode required")
        else:
            raise _Invalid("the fake does not segment images")

    def _get_async(self, request: AWSPreparedRequest, arn: str) -> AWSResponse:
        with self._lock:
            job = self.async_jobs.get(arn)
            if job is None:
                return self._error(request, "ValidationException", f"Invalid invocation ARN {arn}")
            job.polls += 1
            script = job.script
            if (
                job.status == "InProgress"
                and not script.never_finishes
                and job.polls > script.polls_until_done
            ):
                if script.fail_job is not None:
                    job.status, job.failure_message = "Failed", script.fail_job
                else:
                    problem = self._run_async(job)
                    if problem is None:
                        job.status = "Completed"
                    else:
                        job.status, job.failure_message = "Failed", problem
            out_uri = job.output_uri
            if script.output_uri_includes_job_id:
                out_uri = join_s3(out_uri, job.job_id)
            payload: dict[str, Any] = {
                "invocationArn": arn,
                "modelArn": f"arn:aws:bedrock:{self.region_name}::foundation-model/{self.model_id}",
                "status": job.status,
                "submitTime": _EPOCH.isoformat(),
                "lastModifiedTime": _EPOCH.isoformat(),
                "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": out_uri}},
            }
            if job.failure_message:
                payload["failureMessage"] = job.failure_message
            if job.status != "InProgress":
                payload["endTime"] = _EPOCH.isoformat()
        return self._response(request, 200, payload, None)

    def _media_segments(self, uri: str, seconds: int) -> list[tuple[float, float, str]]:
        media = self.media[uri]
        count = math.ceil(media.duration_seconds / seconds)
        out: list[tuple[float, float, str]] = []
        for i in range(count):
            start, end = float(i * seconds), min(float((i + 1) * seconds), media.duration_seconds)
            out.append((start, end, media.segment_text(i, start, end)))
        return out

    def _run_async(self, job: _AsyncJob) -> str | None:
        """Write the job's result files; returns a failure message instead when it cannot."""
        params = job.model_input["segmentedEmbeddingParams"]
        dim = int(params.get("embeddingDimension", 3072))
        modality = next(m for m in ("text", "audio", "video") if m in params)
        spec = params[modality]
        source = spec["source"]["s3Location"]["uri"]
        data = self._read(source)
        if data is None:
            return f"Unable to access the input file: {source}"
        folder = join_s3(job.output_uri, job.job_id)
        script = job.script
        # (embedding type, file name, [(start, end, content)], start/end field names)
        outputs: list[tuple[str, str, list[tuple[float, float, str]], tuple[str, str]]] = []
        if modality == "text":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return "INVALID_CONTENT: the text file is not UTF-8"
            spans = split_text(text, int(spec["segmentationConfig"]["maxLengthChars"]))
            segs = [(float(a), float(b), text[a:b]) for a, b in spans]
            outputs.append(
                (
                    "TEXT",
                    "embedding-text.jsonl",
                    segs,
                    ("segmentStartCharPosition", "segmentEndCharPosition"),
                )
            )
        else:
            if source not in self.media:
                return f"INVALID_CONTENT: unreadable {modality} {source} (not declared to the fake)"
            seconds = int(spec["segmentationConfig"]["durationSeconds"])
            segs = self._media_segments(source, seconds)
            fields = ("segmentStartSeconds", "segmentEndSeconds")
            if modality == "audio":
                outputs.append(("AUDIO", "embedding-audio.jsonl", segs, fields))
            elif spec["embeddingMode"] == "AUDIO_VIDEO_COMBINED":
                # The blog reads this name; the docs list none for combined embeddings.
                outputs.append(
                    ("AUDIO_VIDEO_COMBINED", "embedding-audio-video.jsonl", segs, fields)
                )
            else:
                outputs.append(("VIDEO", "embedding-video.jsonl", segs, fields))
                audio = [(a, b, f"sound of {d}") for a, b, d in segs]
                outputs.append(("AUDIO", "embedding-audio.jsonl", audio, fields))
        results: list[dict[str, Any]] = []
        for etype, name, segs, (start_field, end_field) in outputs:
            if script.fail_output is not None:
                results.append(
                    {
                        "embeddingType": etype,
                        "status": script.failure_status,
                        "failureReason": script.fail_output,
                        "message": f"{etype} embedding failed",
                    }
                )
                continue
            lines: list[dict[str, Any]] = []
            failed = 0
            for i, (start, end, content) in enumerate(segs):
                meta: dict[str, Any] = {"segmentIndex": i, start_field: start, end_field: end}
                if modality == "text":
                    meta = {k: int(v) if k != "segmentIndex" else v for k, v in meta.items()}
                reason = script.failed_segments.get(i)
                if reason is not None:
                    failed += 1
                    lines.append(
                        {
                            "segmentMetadata": meta,
                            "status": script.failure_status,
                            "failureReason": reason,
                            "message": f"segment {i} was not embedded",
                        }
                    )
                else:
                    lines.append(
                        {
                            "embedding": self._vector(content, dim),
                            "segmentMetadata": meta,
                            "status": "SUCCESS",
                        }
                    )
            uri = join_s3(folder, name)
            self._write(
                uri, "\n".join(json.dumps(x) for x in lines).encode() + b"\n", "application/jsonl"
            )
            status = (
                "SUCCESS"
                if not failed
                else script.failure_status
                if failed == len(segs)
                else "PARTIAL_SUCCESS"
            )
            results.append({"embeddingType": etype, "status": status, "outputFileUri": uri})
        self._write(
            join_s3(folder, "segmented-embedding-result.json"),
            json.dumps(
                {"sourceFileUri": source, "embeddingDimension": dim, "embeddingResults": results}
            ).encode(),
            "application/json",
        )
        self._write(
            join_s3(folder, "manifest.json"),
            json.dumps({"invocationArn": job.arn, "modelInput": job.model_input}).encode(),
            "application/json",
        )
        job.written = True
        return None

    # ----------------------------------------------------------------- batch jobs

    def _create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("jobName")
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise _Invalid(f"jobName invalid: {name!r}")
        if not isinstance(body.get("roleArn"), str) or not _ROLE_ARN.match(body["roleArn"]):
            raise _Invalid(f"roleArn invalid: {body.get('roleArn')!r}")
        if body.get("modelId") != self.model_id:
            raise _Invalid(f"The provided model identifier is invalid: {body.get('modelId')!r}")
        inp = ((body.get("inputDataConfig") or {}).get("s3InputDataConfig") or {}).get("s3Uri")
        out = ((body.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}).get("s3Uri")
        for what, uri in (("input", inp), ("output", out)):
            if not isinstance(uri, str) or not _S3_URI.match(uri):
                raise _Invalid(f"{what} s3Uri invalid: {uri!r}")
        with self._lock:
            if any(j.request.get("jobName") == name for j in self.batch_jobs.values()):
                raise _Invalid(f"a job named {name} already exists")
            script = self._batch_scripts.popleft() if self._batch_scripts else BatchJobScript()
            job_id = secrets.token_hex(6)
            arn = (
                f"arn:aws:bedrock:{self.region_name}:{self.account_id}"
                f":model-invocation-job/{job_id}"
            )
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
                "submitTime": _EPOCH.isoformat(),
                "lastModifiedTime": _EPOCH.isoformat(),
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
                            raise _Invalid("modelInput must be a JSON object")
                        embeddings = self._single._embed(model_input)
                    except _Invalid as exc:
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
