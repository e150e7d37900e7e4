"""Amazon Nova Multimodal Embeddings over bedrock-runtime ``InvokeModel`` (SINGLE_EMBEDDING)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, get_args, overload

import numpy as np

from crossmodal_search._aws import (
    DEFAULT_RETRY_POLICY,
    AdaptiveLimiter,
    RetryPolicy,
    build_client,
    call_aws,
)
from crossmodal_search._types import (
    NOVA_DIMENSIONS,
    NOVA_MODEL_ID,
    EmbeddingPurpose,
    PurposeLike,
    Vector,
)
from crossmodal_search.embeddings._base import parse_purpose
from crossmodal_search.embeddings._cache import EmbeddingCache, cache_key
from crossmodal_search.embeddings._media import (
    INLINE_LIMIT_BYTES,
    PreparedMedia,
    S3Source,
    prepare_audio,
    prepare_image,
    prepare_video,
)
from crossmodal_search.errors import ConfigurationError, InvalidInputError, ServiceError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

    from crossmodal_search.embeddings._protocol import ImageInput

__all__ = [
    "DOCUMENTED_TEXT_CHARS",
    "MAX_TEXT_CHARS",
    "DetailLevel",
    "NovaEmbeddings",
    "TruncationMode",
    "VideoEmbeddingMode",
    "build_request",
]

logger = logging.getLogger(__name__)

TruncationMode: TypeAlias = Literal["START", "END", "NONE"]
DetailLevel: TypeAlias = Literal["STANDARD_IMAGE", "DOCUMENT_IMAGE"]
VideoEmbeddingMode: TypeAlias = Literal["AUDIO_VIDEO_COMBINED", "AUDIO_VIDEO_SEPARATE"]

SCHEMA_VERSION = "nova-multimodal-embed-v1"
#: Inline text the service accepts (observed; longer text is a ValidationException).
MAX_TEXT_CHARS = 50_000
#: Inline text limit the AWS docs state; the model truncates by tokens (8K) anyway.
DOCUMENTED_TEXT_CHARS = 8_192

#: Bytes of the request body kept free for the JSON around the base64 payload.
_BODY_OVERHEAD = 1024

_TRUNCATION: tuple[str, ...] = get_args(TruncationMode)
_DETAIL: tuple[str, ...] = get_args(DetailLevel)
_VIDEO_MODES: tuple[str, ...] = get_args(VideoEmbeddingMode)

T = TypeVar("T")


def check_dimension(dimension: object) -> int:
    """``dimension`` as an int when it is a Nova dimension, else :class:`InvalidInputError`."""
    if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)):
        raise InvalidInputError(f"dimension must be one of {NOVA_DIMENSIONS}, got {dimension!r}")
    if int(dimension) not in NOVA_DIMENSIONS:
        raise InvalidInputError(f"dimension must be one of {NOVA_DIMENSIONS}, got {dimension}")
    return int(dimension)


def _choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InvalidInputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _check_text(text: object, label: str = "text") -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{label} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{label} must not be empty or whitespace only")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(
            f"{label} has {len(text)} characters; Nova accepts at most {MAX_TEXT_CHARS} inline "
            "(use the async segmented API or an S3 source for longer text)"
        )
    return text


def build_request(
    modality: Literal["text", "image", "audio", "video"],
    payload: dict[str, Any],
    *,
    purpose: EmbeddingPurpose,
    dimension: int,
) -> dict[str, Any]:
    """The SINGLE_EMBEDDING request body for one input (see reference Part A2)."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": purpose.value,
            "embeddingDimension": dimension,
            modality: payload,
        },
    }


class _Job:
    """One validated request plus what is needed to parse and cache its answer."""

    __slots__ = ("body", "cache_keys", "expect", "separate")

    def __init__(
        self,
        body: dict[str, Any],
        expect: tuple[str, ...],
        cache_keys: dict[str, str] | None,
        separate: bool = False,
    ) -> None:
        self.body = body
        self.expect = expect
        self.cache_keys = cache_keys
        self.separate = separate


class NovaEmbeddings:
    """Amazon Nova Multimodal Embeddings (``amazon.nova-2-multimodal-embeddings-v1:0``).

    Every call is one ``bedrock-runtime`` ``InvokeModel`` request with a SINGLE_EMBEDDING body,
    made through the SDK's single retry layer (throttling and transient errors only). Inputs are
    validated locally first; bad input raises :class:`~crossmodal_search.errors.InvalidInputError`
    before any network call.

    Args:
        client: a bedrock-runtime client to use as is. Its own botocore retry config is kept;
            give it ``Config(retries={"total_max_attempts": 1})`` to avoid two retry layers.
        session: a ``boto3.Session`` to build the client from (when ``client`` is None).
        region_name: region for the built client; defaults to the session's, else us-east-1
            (where Nova Multimodal Embeddings launched).
        config: extra botocore ``Config`` merged into the built client's (which makes a
            single botocore attempt: the SDK's tenacity policy is the only retry layer).
        model_id: the Bedrock model id.
        dimension: default output dimension, one of 256/384/1024/3072.
        max_concurrency: ceiling of Bedrock requests in flight at once (default 32), shared by
            every thread using this instance, and the threads of ``embed_texts``/
            ``embed_images``. The actual limit adapts: throttling halves it, successes grow it
            back (:class:`~crossmodal_search._aws.AdaptiveLimiter`), so a high ceiling is safe
            under a low account quota.
        retry_policy: backoff policy for throttling/transient errors.
        cache: an :class:`EmbeddingCache` or a path to one; off by default. Only inline content
            is cached (S3 objects can change behind the same URI).
        max_inline_bytes: inline media limit after base64 (25 MB, less room for the JSON
            fields); bigger images are downscaled, bigger audio/video refused.

    Example:
        >>> emb = NovaEmbeddings(region_name="us-east-1")  # doctest: +SKIP
        >>> emb.embed_text("red summer dress", purpose="GENERIC_RETRIEVAL").shape  # doctest: +SKIP
        (1024,)
    """

    def __init__(
        self,
        *,
        client: BedrockRuntimeClient | None = None,
        session: boto3.Session | None = None,
        region_name: str | None = None,
        config: Config | None = None,
        model_id: str = NOVA_MODEL_ID,
        dimension: int = 1024,
        max_concurrency: int = 32,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
        max_inline_bytes: int = INLINE_LIMIT_BYTES,
    ) -> None:
        try:
            self._dimension = check_dimension(dimension)
        except InvalidInputError as exc:
            raise ConfigurationError(str(exc)) from None
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError(f"max_concurrency must be an int, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not isinstance(model_id, str) or not model_id:
            raise ConfigurationError("model_id must be a non-empty str")
        if max_inline_bytes < 1024:
            raise ConfigurationError("max_inline_bytes must be at least 1024")
        self._model_id = model_id
        self._max_concurrency = max_concurrency
        self._limiter = AdaptiveLimiter(max_concurrency)
        self._retry_policy = retry_policy
        # The whole InvokeModel body (base64 + JSON fields) must fit in 25,000,000 bytes.
        self._max_inline_bytes = min(max_inline_bytes, INLINE_LIMIT_BYTES - _BODY_OVERHEAD)
        if client is not None:
            if session is not None or region_name is not None or config is not None:
                raise ConfigurationError(
                    "pass either client= or session=/region_name=/config= (they build a client)"
                )
            self._client = client
        else:
            if region_name is None:
                region_name = (session.region_name if session is not None else None) or (
                    _default_region()
                )
            self._client = build_client(
                "bedrock-runtime", session=session, region_name=region_name, config=config
            )
        self._owns_cache = False
        if cache is None or isinstance(cache, EmbeddingCache):
            self._cache = cache
        elif isinstance(cache, (str, os.PathLike)):
            self._cache = EmbeddingCache(cache)
            self._owns_cache = True
        else:
            raise ConfigurationError(
                f"cache must be an EmbeddingCache, a path or None, got {type(cache).__name__}"
            )
        self._calls = 0
        self._calls_lock = threading.Lock()

    # ------------------------------------------------------------------ properties

    @property
    def model_id(self) -> str:
        """The Bedrock model id."""
        return self._model_id

    @property
    def dimension(self) -> int:
        """Default output dimension."""
        return self._dimension

    @property
    def max_concurrency(self) -> int:
        """Threads used for batches."""
        return self._max_concurrency

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The adaptive limit on Bedrock requests in flight (ceiling ``max_concurrency``)."""
        return self._limiter

    @property
    def client(self) -> BedrockRuntimeClient:
        """The bedrock-runtime client in use."""
        return self._client

    @property
    def cache(self) -> EmbeddingCache | None:
        """The embedding cache, if any."""
        return self._cache

    @property
    def calls(self) -> int:
        """``InvokeModel`` requests sent so far (retried attempts included, cache hits not)."""
        with self._calls_lock:
            return self._calls

    def close(self) -> None:
        """Close the cache if this client opened it from a path."""
        if self._owns_cache and self._cache is not None:
            self._cache.close()

    def __enter__(self) -> NovaEmbeddings:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NovaEmbeddings(model_id={self._model_id!r}, dimension={self._dimension})"

    # ------------------------------------------------------------------ job building

    def _dim(self, dimension: int | None) -> int:
        return self._dimension if dimension is None else check_dimension(dimension)

    def _keys(
        self,
        *,
        kind: str,
        dimension: int,
        purpose: EmbeddingPurpose,
        options: str,
        media: PreparedMedia | None = None,
        text: str | None = None,
        types: tuple[str, ...] = ("",),
    ) -> dict[str, str] | None:
        if self._cache is None:
            return None
        if media is not None:
            if media.data is None:  # S3 objects can change behind the same URI
                return None
            content = media.data
        else:
            assert text is not None
            content = text.encode("utf-8")
        return {
            t: cache_key(
                model_id=self._model_id,
                dimension=dimension,
                purpose=purpose.value,
                kind=kind + (f":{t}" if t else ""),
                options=options,
                content=content,
            )
            for t in types
        }

    def _text_job(
        self,
        text: str | S3Source,
        purpose: PurposeLike,
        dimension: int | None,
        truncation: str,
        label: str = "text",
    ) -> _Job:
        p, d = parse_purpose(purpose), self._dim(dimension)
        mode = _choice(truncation, _TRUNCATION, "truncation")
        if isinstance(text, S3Source):
            payload: dict[str, Any] = {"truncationMode": mode, "source": text.to_source()}
            keys = None
        else:
            value = _check_text(text, label)
            if len(value) > DOCUMENTED_TEXT_CHARS:
                logger.debug(
                    "%s: %d characters is over the documented %d; Nova truncates by tokens",
                    label,
                    len(value),
                    DOCUMENTED_TEXT_CHARS,
                )
            payload = {"truncationMode": mode, "value": value}
            keys = self._keys(kind="text", dimension=d, purpose=p, options=mode, text=value)
        body = build_request("text", payload, purpose=p, dimension=d)
        return _Job(body, ("TEXT",), keys)

    def _image_job(
        self,
        image: object,
        purpose: PurposeLike,
        dimension: int | None,
        detail_level: str,
        format: str | None,
        label: str = "image",
    ) -> _Job:
        p, d = parse_purpose(purpose), self._dim(dimension)
        detail = _choice(detail_level, _DETAIL, "detail_level")
        media = prepare_image(
            image, format=format, max_inline_bytes=self._max_inline_bytes, label=label
        )
        payload = {"format": media.format, "source": media.source(), "detailLevel": detail}
        keys = self._keys(
            kind="image", dimension=d, purpose=p, options=f"{detail}:{media.format}", media=media
        )
        return _Job(build_request("image", payload, purpose=p, dimension=d), ("IMAGE",), keys)

    # ------------------------------------------------------------------ invocation

    def _invoke(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        payload = json.dumps(body, separators=(",", ":"))

        def once() -> bytes:
            with self._calls_lock:
                self._calls += 1
            response = self._client.invoke_model(
                modelId=self._model_id,
                body=payload,
                contentType="application/json",
                accept="application/json",
            )
            return response["body"].read()

        raw = call_aws("InvokeModel", once, policy=self._retry_policy, limiter=self._limiter)
        try:
            parsed = json.loads(raw)
            embeddings = parsed["embeddings"]
            if not isinstance(embeddings, list) or not embeddings:
                raise TypeError("'embeddings' is not a non-empty list")
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(
                f"InvokeModel returned an unexpected body ({exc}): {raw[:200]!r}",
                code="InvalidModelResponse",
                operation="InvokeModel",
            ) from exc
        return [e for e in embeddings if isinstance(e, dict)]

    def _vector(self, item: Mapping[str, Any], dimension: int) -> Vector:
        values = item.get("embedding")
        try:
            vec = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ServiceError(
                "InvokeModel returned a non-numeric embedding",
                code="InvalidModelResponse",
                operation="InvokeModel",
            ) from exc
        if vec.ndim != 1 or vec.shape[0] != dimension:
            raise ServiceError(
                f"InvokeModel returned an embedding of shape {vec.shape}, expected ({dimension},)",
                code="InvalidModelResponse",
                operation="InvokeModel",
            )
        if not np.all(np.isfinite(vec)):
            raise ServiceError(
                "InvokeModel returned an embedding with NaN or infinite values",
                code="InvalidModelResponse",
                operation="InvokeModel",
            )
        if "truncatedCharLength" in item:
            logger.info(
                "Nova truncated the input text at character %s", item["truncatedCharLength"]
            )
        return vec

    def _run(self, job: _Job) -> dict[str, Vector]:
        """Answer one job from the cache or Bedrock; returns vectors keyed by embedding type."""
        dimension = int(job.body["singleEmbeddingParams"]["embeddingDimension"])
        cache = self._cache
        if cache is not None and job.cache_keys is not None:
            hits = {t: cache.get(k) for t, k in job.cache_keys.items()}
            if all(v is not None and v.shape[0] == dimension for v in hits.values()):
                return {t: v for t, v in hits.items() if v is not None}
        items = self._invoke(job.body)
        by_type: dict[str, Vector] = {}
        for item in items:
            etype = str(item.get("embeddingType", ""))
            if etype in job.expect and etype not in by_type:
                by_type[etype] = self._vector(item, dimension)
        if job.separate:
            missing = [t for t in job.expect if t not in by_type]
            if missing:
                raise ServiceError(
                    f"InvokeModel answer lacks embedding types {missing}; got "
                    f"{[i.get('embeddingType') for i in items]}",
                    code="InvalidModelResponse",
                    operation="InvokeModel",
                )
            result = by_type
        else:
            found = next((t for t in job.expect if t in by_type), None)
            if found is None:
                raise ServiceError(
                    f"InvokeModel answer has no {'/'.join(job.expect)} embedding; got "
                    f"{[i.get('embeddingType') for i in items]}",
                    code="InvalidModelResponse",
                    operation="InvokeModel",
                )
            result = {"": by_type[found]}
        if cache is not None and job.cache_keys is not None:
            for t, k in job.cache_keys.items():
                if t in result:
                    cache.put(k, result[t])
        return result

    def _run_single(self, job: _Job) -> Vector:
        return self._run(job)[""]

    def _map(self, fn: Callable[[_Job], T], jobs: Sequence[_Job]) -> list[T]:
        # Identical requests in one batch (the same text twice) are sent once.
        unique: dict[str, int] = {}
        slots = [unique.setdefault(json.dumps(j.body, sort_keys=True), len(unique)) for j in jobs]
        if len(unique) < len(jobs):
            first = dict(zip(slots, jobs, strict=True))
            results = self._map_unique(fn, [first[i] for i in range(len(unique))])
            return [results[slot] for slot in slots]
        return self._map_unique(fn, jobs)

    def _map_unique(self, fn: Callable[[_Job], T], jobs: Sequence[_Job]) -> list[T]:
        if len(jobs) <= 1 or self._max_concurrency == 1:
            return [fn(j) for j in jobs]
        pool = ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, len(jobs)),
            thread_name_prefix="nova-embed",
        )
        futures: list[Future[T]] = []
        try:
            futures = [pool.submit(fn, j) for j in jobs]
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True)

    def _stack(self, vectors: list[Vector], dimension: int) -> Vector:
        if not vectors:
            return np.zeros((0, dimension), dtype=np.float32)
        return np.stack(vectors).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ text

    def embed_text(
        self,
        text: str | S3Source,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        truncation: TruncationMode = "END",
    ) -> Vector:
        """Embed one text (inline, or a text object in S3 given as :class:`S3Source`).

        Args:
            text: a non-empty str of at most 50,000 characters (AWS documents 8,192; the model
                reads about 8K tokens and truncates the rest per ``truncation``).
            purpose: ``GENERIC_INDEX`` to index, a ``*_RETRIEVAL`` value to query.
            dimension: 256/384/1024/3072; defaults to the client's.
            truncation: ``END`` (drop the end), ``START`` or ``NONE`` (fail when too long).

        Returns:
            A float32 vector of shape ``(dimension,)``.
        """
        return self._run_single(self._text_job(text, purpose, dimension, truncation))

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        truncation: TruncationMode = "END",
    ) -> Vector:
        """Embed many texts concurrently (``max_concurrency`` threads).

        Every text is validated before the first request; duplicates are sent once. Returns
        ``(n, d)`` in input order.
        """
        if isinstance(texts, str):
            raise InvalidInputError("embed_texts takes a sequence of str, not one str")
        jobs = [
            self._text_job(t, purpose, dimension, truncation, label=f"texts[{i}]")
            for i, t in enumerate(texts)
        ]
        return self._stack(self._map(self._run_single, jobs), self._dim(dimension))

    # ------------------------------------------------------------------ images

    def embed_image(
        self,
        image: ImageInput | S3Source,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        detail_level: DetailLevel = "STANDARD_IMAGE",
        format: str | None = None,
    ) -> Vector:
        """Embed one image.

        Args:
            image: bytes, a local path, a PIL image, an ``s3://`` URI or an :class:`S3Source`.
                The format is detected from the bytes (png/jpeg/gif/webp sent as is; others
                converted); EXIF orientation is applied; oversized images are downscaled.
            purpose: ``GENERIC_INDEX`` to index, a ``*_RETRIEVAL`` value to query.
            dimension: 256/384/1024/3072; defaults to the client's.
            detail_level: ``STANDARD_IMAGE`` or ``DOCUMENT_IMAGE`` (text-heavy pages).
            format: only for S3 keys without an image extension.
        """
        job = self._image_job(image, purpose, dimension, detail_level, format)
        return self._run_single(job)

    def embed_images(
        self,
        images: Sequence[ImageInput | S3Source],
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        detail_level: DetailLevel = "STANDARD_IMAGE",
    ) -> Vector:
        """Embed many images concurrently; all are validated first. Returns ``(n, d)``."""
        jobs = [
            self._image_job(img, purpose, dimension, detail_level, None, label=f"images[{i}]")
            for i, img in enumerate(images)
        ]
        return self._stack(self._map(self._run_single, jobs), self._dim(dimension))

    def embed_document(
        self,
        page: ImageInput | S3Source,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        page_number: int = 0,
        format: str | None = None,
    ) -> Vector:
        """Embed a document page with ``detailLevel=DOCUMENT_IMAGE``.

        ``page`` is a page image (any :meth:`embed_image` input) or a PDF (bytes or path), whose
        page ``page_number`` (0-based) is rendered with pypdfium2 (``pip install
        'crossmodal-search[pdf]'``). Query such an index with ``DOCUMENT_RETRIEVAL``.
        """
        image = _maybe_render_pdf(page, page_number)
        job = self._image_job(image, purpose, dimension, "DOCUMENT_IMAGE", format, label="page")
        return self._run_single(job)

    # ------------------------------------------------------------------ audio / video

    def embed_audio(
        self,
        audio: bytes | str | os.PathLike[str] | S3Source,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        format: str | None = None,
    ) -> Vector:
        """Embed an audio clip of at most 30 s (mp3/wav/ogg; bytes, path or S3).

        The container is detected from magic bytes; ``format=`` only where detection cannot
        work (S3 keys without extension). The 30 s limit is checked locally for WAV and
        enforced by the service otherwise.
        """
        p, d = parse_purpose(purpose), self._dim(dimension)
        media = prepare_audio(audio, format=format, max_inline_bytes=self._max_inline_bytes)
        payload = {"format": media.format, "source": media.source()}
        keys = self._keys(kind="audio", dimension=d, purpose=p, options=media.format, media=media)
        job = _Job(build_request("audio", payload, purpose=p, dimension=d), ("AUDIO",), keys)
        return self._run_single(job)

    @overload
    def embed_video(
        self,
        video: bytes | str | os.PathLike[str] | S3Source,
        *,
        purpose: PurposeLike = ...,
        dimension: int | None = ...,
        embedding_mode: Literal["AUDIO_VIDEO_COMBINED"] = ...,
        format: str | None = ...,
    ) -> Vector: ...

    @overload
    def embed_video(
        self,
        video: bytes | str | os.PathLike[str] | S3Source,
        *,
        purpose: PurposeLike = ...,
        dimension: int | None = ...,
        embedding_mode: Literal["AUDIO_VIDEO_SEPARATE"],
        format: str | None = ...,
    ) -> dict[str, Vector]: ...

    def embed_video(
        self,
        video: bytes | str | os.PathLike[str] | S3Source,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        embedding_mode: VideoEmbeddingMode = "AUDIO_VIDEO_COMBINED",
        format: str | None = None,
    ) -> Vector | dict[str, Vector]:
        """Embed a video clip of at most 30 s (bytes, path or S3).

        Args:
            embedding_mode: ``AUDIO_VIDEO_COMBINED`` returns one vector;
                ``AUDIO_VIDEO_SEPARATE`` returns ``{"VIDEO": ..., "AUDIO": ...}``.
            format: only where magic-byte detection cannot work (S3 keys without extension).
        """
        p, d = parse_purpose(purpose), self._dim(dimension)
        mode = _choice(embedding_mode, _VIDEO_MODES, "embedding_mode")
        media = prepare_video(video, format=format, max_inline_bytes=self._max_inline_bytes)
        payload = {"format": media.format, "source": media.source(), "embeddingMode": mode}
        body = build_request("video", payload, purpose=p, dimension=d)
        if mode == "AUDIO_VIDEO_SEPARATE":
            types: tuple[str, ...] = ("VIDEO", "AUDIO")
            keys = self._keys(
                kind="video",
                dimension=d,
                purpose=p,
                options=f"{mode}:{media.format}",
                media=media,
                types=types,
            )
            return self._run(_Job(body, types, keys, separate=True))
        keys = self._keys(
            kind="video", dimension=d, purpose=p, options=f"{mode}:{media.format}", media=media
        )
        return self._run_single(_Job(body, ("AUDIO_VIDEO_COMBINED", "VIDEO"), keys))


def _default_region() -> str:
    import boto3

    return boto3.Session().region_name or "us-east-1"


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(5)
    except OSError:
        return b""


def _maybe_render_pdf(page: object, page_number: int) -> object:
    """Render one PDF page to a PIL image; any non-PDF input is returned unchanged."""
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
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise ConfigurationError(
            "PDF documents need pypdfium2: pip install 'crossmodal-search[pdf]' "
            "(or pass a rendered page image)"
        ) from None
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
