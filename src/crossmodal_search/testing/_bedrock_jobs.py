"""A fake of Bedrock's asynchronous and batch jobs for Nova embeddings, at the HTTP boundary.

:class:`FakeBedrockJobs` answers, through botocore ``before-send`` handlers on real clients:

* ``bedrock-runtime``: ``StartAsyncInvoke`` (``SEGMENTED_EMBEDDING``) and ``GetAsyncInvoke``
  (:mod:`._segmented_fake`);
* ``bedrock``: ``CreateModelInvocationJob``, ``GetModelInvocationJob`` and
  ``StopModelInvocationJob`` (:mod:`._batch_fake`).

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
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import unquote

from crossmodal_search._types import NOVA_MODEL_ID
from crossmodal_search.testing._batch_fake import BatchJobScript, BatchJobsFake
from crossmodal_search.testing._bedrock import FakeBedrock
from crossmodal_search.testing._nova_schema import Invalid
from crossmodal_search.testing._segmented_fake import AsyncJobScript, FakeMedia, SegmentedJobsFake
from crossmodal_search.testing._wire import dummy_client, request_bytes

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse
    from botocore.config import Config
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_s3 import S3Client

    from crossmodal_search.embeddings._protocol import Embedder

__all__ = ["AsyncJobScript", "BatchJobScript", "FakeBedrockJobs", "FakeMedia"]

#: A Bedrock client the fake answers: ``bedrock-runtime`` (async jobs) or ``bedrock`` (batch).
_JobClient = TypeVar("_JobClient", "BedrockRuntimeClient", "BedrockClient")


class FakeBedrockJobs(SegmentedJobsFake, BatchJobsFake):
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
        self._s3 = s3_client
        self.region_name = region_name
        self.account_id = account_id
        self.model_id = model_id
        self.requests = []
        self.calls = Counter()
        self.media = {}
        self.async_jobs = {}
        self.batch_jobs = {}
        self._async_scripts = deque()
        self._batch_scripts = deque()
        self._failures = deque()
        self._lock = threading.RLock()

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
        if service == "bedrock":
            return self.attach(dummy_client("bedrock", region_name=self.region_name, config=config))
        if service != "bedrock-runtime":
            raise ValueError(f"service must be 'bedrock-runtime' or 'bedrock', got {service!r}")
        return self.attach(
            dummy_client("bedrock-runtime", region_name=self.region_name, config=config)
        )

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
            except Invalid as exc:
                return self._error(request, "ValidationException", str(exc))

        return handle
