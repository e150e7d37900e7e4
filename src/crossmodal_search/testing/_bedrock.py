"""A fake of Bedrock's ``InvokeModel`` for Nova embeddings, attached at the HTTP boundary.

The fake registers a botocore ``before-send`` handler on a real ``bedrock-runtime`` client, so
botocore's own request serialisation and response parsing run exactly as against AWS; only the
HTTP round trip is replaced. Request bodies are validated strictly against the documented Nova
schema (unknown fields, missing fields, wrong enums, bad base64 give a 400
``ValidationException`` as the service does) and answered with deterministic vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from crossmodal_search._types import NOVA_MODEL_ID, Vector
from crossmodal_search.testing._nova_schema import (
    AUDIO_FORMATS,
    IMAGE_FORMATS,
    PURPOSES,
    SCHEMA_VERSION,
    VIDEO_FORMATS,
    VIDEO_MODES,
    Invalid,
    check_dimension,
    enum,
    fields,
    one_modality,
    seeded_vector,
    source,
)
from crossmodal_search.testing._wire import dummy_client, json_response, request_bytes

if TYPE_CHECKING:
    import boto3
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse
    from botocore.config import Config
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

    from crossmodal_search.embeddings._protocol import Embedder

__all__ = ["ERROR_STATUS", "FakeBedrock"]

#: HTTP status of each bedrock-runtime error code (botocore 1.44.8 service model).
ERROR_STATUS: dict[str, int] = {
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "UnrecognizedClientException": 403,
}

_PIL_FORMAT = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "WEBP": "webp", "MPO": "jpeg"}
_MAX_BODY = 25_000_000
_MODEL_PATH = re.compile(r"/model/([^/]+)/invoke$")


class FakeBedrock:
    """A thread-safe fake of bedrock-runtime ``InvokeModel`` for Nova Multimodal Embeddings.

    Args:
        embedder: computes the vectors (default :class:`OfflineEmbedder`, so text/image
            geometry is meaningful: a red image is near "red dress"). Inputs it cannot read
            (S3 sources, audio, video) get a deterministic pseudo-random unit vector.
        latency: seconds each call sleeps (outside any lock), to simulate network time.
        throttle_rate: requests per second allowed by a token bucket; above it the call gets a
            429 ``ThrottlingException``. ``None`` disables throttling.
        throttle_burst: bucket capacity (default ``max(1, throttle_rate)``).
        model_id: the model id the fake answers to; others get a ValidationException.
        record_requests: keep every request body in :attr:`requests` (default). Turn it off
            for long benchmark runs: bodies carry base64 media. :attr:`calls` counts anyway.

    Attributes:
        requests: every request body received (parsed JSON, or ``{"_raw": str}`` if not JSON),
            including failed ones, in arrival order.

    Example:
        >>> fake = FakeBedrock()
        >>> client = fake.client()
        >>> NovaEmbeddings(client=client).embed_text("red dress").shape  # doctest: +SKIP
        (1024,)
        >>> fake.fail_next("ThrottlingException", times=2)
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        latency: float = 0.0,
        throttle_rate: float | None = None,
        throttle_burst: float | None = None,
        model_id: str = NOVA_MODEL_ID,
        record_requests: bool = True,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if throttle_rate is not None and throttle_rate <= 0:
            raise ValueError("throttle_rate must be > 0")
        self._embedder = embedder
        self.latency = latency
        self.throttle_rate = throttle_rate
        self._burst = float(
            throttle_burst if throttle_burst is not None else max(1.0, throttle_rate or 1.0)
        )
        self._tokens = self._burst
        self._last_refill = time.monotonic()
        self.model_id = model_id
        self.requests: list[dict[str, Any]] = []
        self.record_requests = record_requests
        self._calls = 0
        self._failures: deque[tuple[str, str | None]] = deque()
        self._matching: list[tuple[str, str, str | None]] = []
        self._random: tuple[str, float, random.Random] | None = None
        self._lock = threading.Lock()
        self._ok = 0
        self._errors: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0

    # ----------------------------------------------------------------- wiring

    def client(
        self, *, region_name: str = "us-east-1", config: Config | None = None
    ) -> BedrockRuntimeClient:
        """A real boto3 bedrock-runtime client with dummy credentials, answered by this fake.

        Its botocore retries are off (``total_max_attempts=1``) unless ``config`` says so,
        so every retry a test sees comes from the SDK's own policy.
        """
        return self.attach(dummy_client("bedrock-runtime", region_name=region_name, config=config))

    def session(self, *, region_name: str = "us-east-1") -> boto3.Session:
        """A ``boto3.Session`` with dummy credentials whose bedrock-runtime clients use this fake.

        For code that builds its own client, e.g. ``NovaEmbeddings(session=fake.session())``,
        or, to cover code that calls ``boto3.client`` itself, install it as boto3's default
        session (``monkeypatch.setattr(boto3, "DEFAULT_SESSION", fake.session())``).
        """
        import boto3
        import botocore.session

        core = botocore.session.get_session()
        core.set_credentials("testing", "testing")
        core.register(
            "before-send.bedrock-runtime.InvokeModel",
            self._handle,  # type: ignore[arg-type]  # before-send handlers return a response
            unique_id=f"crossmodal-fake-bedrock-{id(self)}",
        )
        return boto3.Session(botocore_session=core, region_name=region_name)

    def attach(self, client: BedrockRuntimeClient) -> BedrockRuntimeClient:
        """Answer ``client``'s InvokeModel calls from this fake; returns the client."""
        client.meta.events.register(
            "before-send.bedrock-runtime.InvokeModel",
            self._handle,  # type: ignore[arg-type]  # before-send handlers return a response
            unique_id=f"crossmodal-fake-bedrock-{id(self)}",
        )
        return client

    # ----------------------------------------------------------------- controls

    def fail_next(self, code: str, *, times: int = 1, message: str | None = None) -> None:
        """Answer the next ``times`` calls with AWS error ``code`` (status from ERROR_STATUS)."""
        if times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._failures.extend([(code, message)] * times)

    def fail_always(self, code: str, *, message: str | None = None) -> None:
        """Answer every following call with ``code`` (until :meth:`reset_failures`)."""
        self.fail_next(code, times=1_000_000, message=message)

    def fail_matching(self, code: str, *, contains: str, message: str | None = None) -> None:
        """Answer every call whose request body contains ``contains`` with ``code``.

        For a product that always fails: ``fail_matching("ModelErrorException",
        contains="cursed lamp")`` fails every request embedding a text with those words,
        however often it is retried, while every other request is answered.
        """
        if not contains:
            raise ValueError("contains must be a non-empty string")
        with self._lock:
            self._matching.append((contains, code, message))

    def fail_randomly(self, code: str, *, rate: float, seed: int = 0) -> None:
        """Answer each call with ``code`` with probability ``rate`` (a seeded storm)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be in [0, 1]")
        with self._lock:
            self._random = (code, rate, random.Random(seed))

    def reset_failures(self) -> None:
        """Drop every error injection (queued, matching and random)."""
        with self._lock:
            self._failures.clear()
            self._matching.clear()
            self._random = None

    @property
    def calls(self) -> int:
        """Requests received (successful or not)."""
        with self._lock:
            return self._calls

    @property
    def successes(self) -> int:
        """Requests answered with an embedding."""
        with self._lock:
            return self._ok

    @property
    def max_in_flight(self) -> int:
        """Most requests that were being answered at the same time (concurrency seen)."""
        with self._lock:
            return self._max_in_flight

    @property
    def errors(self) -> dict[str, int]:
        """Error responses sent, by code."""
        with self._lock:
            return dict(self._errors)

    # ----------------------------------------------------------------- HTTP

    def _response(
        self,
        request: AWSPreparedRequest,
        status: int,
        payload: Mapping[str, Any],
        error_code: str | None = None,
    ) -> AWSResponse:
        if error_code is not None:
            with self._lock:
                self._errors[error_code] = self._errors.get(error_code, 0) + 1
        return json_response(request.url, status, payload, error_code=error_code)

    def _error(self, request: AWSPreparedRequest, code: str, message: str) -> AWSResponse:
        return self._response(
            request,
            ERROR_STATUS.get(code, 400),
            {"__type": code, "message": message},
            error_code=code,
        )

    def _take_token(self) -> bool:
        if self.throttle_rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(
            self._burst, self._tokens + (now - self._last_refill) * self.throttle_rate
        )
        self._last_refill = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _injected(self, raw: bytes) -> tuple[str, str | None] | None:
        """The matching or random failure for a request (called under the lock)."""
        text = raw.decode("utf-8", "replace")
        for contains, code, message in self._matching:
            if contains in text:
                return code, message
        if self._random is not None:
            code, rate, rng = self._random
            if rng.random() < rate:
                return code, None
        return None

    def _handle(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._answer(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, request: AWSPreparedRequest) -> AWSResponse:
        raw_bytes = request_bytes(request)
        try:
            body: Any = json.loads(raw_bytes)
        except ValueError:
            body = None
        with self._lock:
            self._calls += 1
            if self.record_requests:
                self.requests.append(body if isinstance(body, dict) else {"_raw": raw_bytes[:1000]})
            failure = self._failures.popleft() if self._failures else None
            if failure is None:
                failure = self._injected(raw_bytes)
            allowed = self._take_token()
        if self.latency:
            time.sleep(self.latency)
        if failure is not None:
            code, message = failure
            return self._error(request, code, message or f"injected {code}")
        if not allowed:
            return self._error(request, "ThrottlingException", "Too many requests, please wait")
        match = _MODEL_PATH.search(request.url.split("?", 1)[0])
        model = unquote(match.group(1)) if match else ""
        if model != self.model_id:
            return self._error(
                request, "ValidationException", "The provided model identifier is invalid."
            )
        if len(raw_bytes) > _MAX_BODY:
            return self._error(request, "ValidationException", f"body exceeds {_MAX_BODY} bytes")
        if not isinstance(body, dict):
            return self._error(request, "ValidationException", "Malformed input request")
        try:
            embeddings = self._embed(body)
        except Invalid as exc:
            return self._error(request, "ValidationException", f"Malformed input request: {exc}")
        with self._lock:
            self._ok += 1
        return self._response(request, 200, {"embeddings": embeddings})

    # ----------------------------------------------------------------- schema + vectors

    def _embed(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``embeddings`` answering a SINGLE_EMBEDDING body; :class:`Invalid` if malformed."""
        fields(
            body,
            "#",
            {"taskType"},
            {"schemaVersion", "singleEmbeddingParams", "segmentedEmbeddingParams"},
        )
        if "schemaVersion" in body:
            enum(body["schemaVersion"], {SCHEMA_VERSION}, "#/schemaVersion")
        task = enum(body["taskType"], {"SINGLE_EMBEDDING", "SEGMENTED_EMBEDDING"}, "#/taskType")
        if task != "SINGLE_EMBEDDING":
            raise Invalid("SEGMENTED_EMBEDDING is only supported by StartAsyncInvoke")
        if "segmentedEmbeddingParams" in body:
            raise Invalid("#: segmentedEmbeddingParams is not permitted with SINGLE_EMBEDDING")
        if "singleEmbeddingParams" not in body:
            raise Invalid("#: required key [singleEmbeddingParams] not found")
        where = "#/singleEmbeddingParams"
        params = fields(
            body["singleEmbeddingParams"],
            where,
            {"embeddingPurpose"},
            {"embeddingDimension", "text", "image", "audio", "video"},
        )
        enum(params["embeddingPurpose"], PURPOSES, f"{where}/embeddingPurpose")
        dim = check_dimension(params, where)
        modality = one_modality(params, where)
        answer = {
            "text": self._answer_text,
            "image": self._answer_image,
            "audio": self._answer_audio,
            "video": self._answer_video,
        }[modality]
        return answer(params[modality], f"{where}/{modality}", dim)

    def _answer_text(self, spec: object, where: str, dim: int) -> list[dict[str, Any]]:
        spec = fields(spec, where, {"truncationMode"}, {"value", "source"})
        enum(spec["truncationMode"], {"START", "END", "NONE"}, where + "/truncationMode")
        if ("value" in spec) == ("source" in spec):
            raise Invalid(f"{where}: exactly one of value, source required")
        if "source" in spec:
            src = source(spec["source"], where + "/source", allow_bytes=False)
            return [self._item("TEXT", self._seeded_content("text", src, dim))]
        value = spec["value"]
        if not isinstance(value, str) or not value:
            raise Invalid(f"{where}/value: expected a non-empty string")
        if len(value) > 50_000:
            raise Invalid(f"{where}/value: expected maxLength: 50000, actual: {len(value)}")
        return [self._item("TEXT", self._text_vector(value, dim))]

    def _answer_image(self, spec: object, where: str, dim: int) -> list[dict[str, Any]]:
        spec = fields(spec, where, {"format", "source"}, {"detailLevel"})
        fmt = enum(spec["format"], IMAGE_FORMATS, where + "/format")
        if "detailLevel" in spec:
            enum(spec["detailLevel"], {"STANDARD_IMAGE", "DOCUMENT_IMAGE"}, where + "/detailLevel")
        src = source(spec["source"], where + "/source", allow_bytes=True)
        if isinstance(src, bytes):
            return [self._item("IMAGE", self._image_vector(src, fmt, where, dim))]
        return [self._item("IMAGE", seeded_vector("image-s3:" + src, dim))]

    def _answer_audio(self, spec: object, where: str, dim: int) -> list[dict[str, Any]]:
        spec = fields(spec, where, {"format", "source"}, set())
        enum(spec["format"], AUDIO_FORMATS, where + "/format")
        src = source(spec["source"], where + "/source", allow_bytes=True)
        return [self._item("AUDIO", self._seeded_content("audio", src, dim))]

    def _answer_video(self, spec: object, where: str, dim: int) -> list[dict[str, Any]]:
        spec = fields(spec, where, {"format", "source", "embeddingMode"}, set())
        enum(spec["format"], VIDEO_FORMATS, where + "/format")
        mode = enum(spec["embeddingMode"], VIDEO_MODES, where + "/embeddingMode")
        src = source(spec["source"], where + "/source", allow_bytes=True)
        if mode == "AUDIO_VIDEO_COMBINED":
            return [self._item("AUDIO_VIDEO_COMBINED", self._seeded_content("av", src, dim))]
        return [
            self._item("VIDEO", self._seeded_content("video", src, dim)),
            self._item("AUDIO", self._seeded_content("audio", src, dim)),
        ]

    @staticmethod
    def _item(etype: str, vector: Vector) -> dict[str, Any]:
        return {"embeddingType": etype, "embedding": [float(x) for x in vector]}

    def _offline(self) -> Embedder:
        if self._embedder is None:
            from crossmodal_search.embeddings._offline import OfflineEmbedder

            self._embedder = OfflineEmbedder(dimension=3072)
        return self._embedder

    def _text_vector(self, text: str, dim: int) -> Vector:
        return self._offline().embed_text(text, dimension=dim)

    def _image_vector(self, data: bytes, fmt: str, where: str, dim: int) -> Vector:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as img:
                actual = _PIL_FORMAT.get(img.format or "")
                img.load()
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise Invalid(f"{where}/source/bytes: unable to decode the image: {exc}") from None
        if actual != fmt:
            raise Invalid(f"{where}/format: declared {fmt!r} but the bytes are {actual!r}")
        return self._offline().embed_image(data, dimension=dim)

    @staticmethod
    def _seeded_content(kind: str, src: bytes | str, dim: int) -> Vector:
        key = src if isinstance(src, str) else hashlib.sha256(src).hexdigest()
        return seeded_vector(f"{kind}:{key}", dim)

    def __repr__(self) -> str:
        return (
            f"FakeBedrock(calls={self.calls}, latency={self.latency}, "
            f"throttle_rate={self.throttle_rate})"
        )
