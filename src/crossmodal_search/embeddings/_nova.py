"""Amazon Nova Multimodal Embeddings over bedrock-runtime ``InvokeModel`` (SINGLE_EMBEDDING).

The client: retries, the adaptive concurrency limit, the cache and threads. Request bodies and
answers are built and read in :mod:`crossmodal_search.embeddings._nova_wire`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from crossmodal_search._aws import (
    DEFAULT_RETRY_POLICY,
    AdaptiveLimiter,
    RetryPolicy,
    build_client,
    call_aws,
)
from crossmodal_search._types import NOVA_MODEL_ID, EmbeddingPurpose, PurposeLike, Vector
from crossmodal_search.embeddings._base import BaseEmbedder, EmbedInput, Media, parse_purpose
from crossmodal_search.embeddings._cache import EmbeddingCache, cache_key
from crossmodal_search.embeddings._media import (
    INLINE_LIMIT_BYTES,
    S3Source,
    prepare_audio,
    prepare_image,
    prepare_video,
)
from crossmodal_search.embeddings._nova_wire import (
    DETAIL_LEVELS,
    DOCUMENTED_TEXT_CHARS,
    TRUNCATION_MODES,
    VIDEO_MODES,
    DetailLevel,
    NovaRequest,
    TruncationMode,
    VideoEmbeddingMode,
    build_request,
    check_dimension,
    check_inline_text,
    choice,
    image_payload,
    parse_answer,
    pick_vectors,
    text_payload,
)
from crossmodal_search.embeddings._segments import render_pdf_page
from crossmodal_search.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

    from crossmodal_search.embeddings._protocol import ImageInput

__all__ = ["NovaEmbeddings"]

logger = logging.getLogger(__name__)

#: Bytes of the request body kept free for the JSON around the base64 payload.
_BODY_OVERHEAD = 1024

T = TypeVar("T")


class NovaEmbeddings(BaseEmbedder):
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
        self._limiter = AdaptiveLimiter(
            max_concurrency, clock=retry_policy.clock, sleep=retry_policy.sleep
        )
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

    # ------------------------------------------------------------------ checks and requests

    def _dim(self, dimension: int | None) -> int:
        return self._dimension if dimension is None else check_dimension(dimension)

    def _check_dimension(self, dimension: object) -> int:
        return check_dimension(dimension)

    def _text_input(self, text: object, label: str, mode: str | None = None) -> EmbedInput:
        if isinstance(text, S3Source):
            return EmbedInput("text", label, media=Media(s3=text), mode=mode)
        value = check_inline_text(text, label)
        if len(value) > DOCUMENTED_TEXT_CHARS:
            logger.debug(
                "%s: %d characters is over the documented %d; Nova truncates by tokens",
                label,
                len(value),
                DOCUMENTED_TEXT_CHARS,
            )
        return EmbedInput("text", label, text=value, mode=mode)

    def _cache_keys(
        self,
        kind: str,
        dimension: int,
        purpose: EmbeddingPurpose,
        options: str,
        content: bytes | None,
        types: tuple[str, ...] = ("",),
    ) -> dict[str, str] | None:
        """Cache key per embedding type; None without a cache or for S3 content (it can
        change behind the same URI)."""
        if self._cache is None or content is None:
            return None
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

    def _request(self, item: EmbedInput, purpose: EmbeddingPurpose, dimension: int) -> NovaRequest:
        """The request for one checked input (an image is prepared here: format, size)."""
        if item.kind == "text":
            mode = item.mode or "END"
            if item.text is None:  # a text object in S3: not cached, it can change
                assert item.media is not None and item.media.s3 is not None
                payload, keys = text_payload(item.media.s3, mode), None
            else:
                payload = text_payload(item.text, mode)
                keys = self._cache_keys("text", dimension, purpose, mode, item.text.encode())
            body = build_request("text", payload, purpose=purpose, dimension=dimension)
            return NovaRequest(body, ("TEXT",), keys)
        assert item.media is not None
        detail = item.mode or "STANDARD_IMAGE"
        media = prepare_image(
            item.media.source,
            format=item.media.format,
            max_inline_bytes=self._max_inline_bytes,
            label=item.label,
        )
        keys = self._cache_keys("image", dimension, purpose, f"{detail}:{media.format}", media.data)
        body = build_request(
            "image", image_payload(media, detail), purpose=purpose, dimension=dimension
        )
        return NovaRequest(body, ("IMAGE",), keys)

    # ------------------------------------------------------------------ invocation

    def _embed(
        self, items: Sequence[EmbedInput], *, purpose: EmbeddingPurpose, dimension: int
    ) -> Vector:
        # Every request is built (images prepared) before the first one is sent.
        requests = [self._request(item, purpose, dimension) for item in items]
        return np.stack(self._map(self._answer_one, requests)).astype(np.float32, copy=False)

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
        items = parse_answer(raw)
        for item in items:
            if "truncatedCharLength" in item:
                logger.info(
                    "Nova truncated the input text at character %s", item["truncatedCharLength"]
                )
        return items

    def _answer(self, request: NovaRequest) -> dict[str, Vector]:
        """Answer one request from the cache or Bedrock; vectors keyed by embedding type."""
        cache = self._cache
        if cache is not None and request.cache_keys is not None:
            hits = {t: cache.get(k) for t, k in request.cache_keys.items()}
            if all(v is not None and v.shape[0] == request.dimension for v in hits.values()):
                return {t: v for t, v in hits.items() if v is not None}
        result = pick_vectors(request, self._invoke(request.body))
        if cache is not None and request.cache_keys is not None:
            for t, k in request.cache_keys.items():
                if t in result:
                    cache.put(k, result[t])
        return result

    def _answer_one(self, request: NovaRequest) -> Vector:
        return self._answer(request)[""]

    def _map(self, fn: Callable[[NovaRequest], T], requests: Sequence[NovaRequest]) -> list[T]:
        if len(requests) == 1:  # nothing to share or run in parallel: no body serialised twice
            return [fn(requests[0])]
        # Identical requests in one batch (the same text twice) are sent once.
        unique: dict[str, int] = {}
        slots = [
            unique.setdefault(json.dumps(r.body, sort_keys=True), len(unique)) for r in requests
        ]
        if len(unique) < len(requests):
            first = dict(zip(slots, requests, strict=True))
            results = self._map_unique(fn, [first[i] for i in range(len(unique))])
            return [results[slot] for slot in slots]
        return self._map_unique(fn, requests)

    def _map_unique(
        self, fn: Callable[[NovaRequest], T], requests: Sequence[NovaRequest]
    ) -> list[T]:
        if len(requests) <= 1 or self._max_concurrency == 1:
            return [fn(r) for r in requests]
        pool = ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, len(requests)),
            thread_name_prefix="nova-embed",
        )
        futures: list[Future[T]] = []
        try:
            futures = [pool.submit(fn, r) for r in requests]
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True)

    # ------------------------------------------------------------------ text and images

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
        mode = choice(truncation, TRUNCATION_MODES, "truncation")
        return self._embed_checked("text", [text], purpose, dimension, mode=mode)

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
        mode = choice(truncation, TRUNCATION_MODES, "truncation")
        return self._embed_checked("text", texts, purpose, dimension, batch=True, mode=mode)

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
        mode = choice(detail_level, DETAIL_LEVELS, "detail_level")
        return self._embed_checked("image", [image], purpose, dimension, mode=mode, format=format)

    def embed_images(
        self,
        images: Sequence[ImageInput | S3Source],
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
        detail_level: DetailLevel = "STANDARD_IMAGE",
    ) -> Vector:
        """Embed many images concurrently; all are validated first. Returns ``(n, d)``."""
        mode = choice(detail_level, DETAIL_LEVELS, "detail_level")
        return self._embed_checked("image", images, purpose, dimension, batch=True, mode=mode)

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
        image = render_pdf_page(page, page_number)
        return self._embed_checked(
            "image", [image], purpose, dimension, mode="DOCUMENT_IMAGE", format=format, label="page"
        )

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
        keys = self._cache_keys("audio", d, p, media.format, media.data)
        body = build_request("audio", payload, purpose=p, dimension=d)
        return self._answer_one(NovaRequest(body, ("AUDIO",), keys))

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
        mode = choice(embedding_mode, VIDEO_MODES, "embedding_mode")
        media = prepare_video(video, format=format, max_inline_bytes=self._max_inline_bytes)
        payload = {"format": media.format, "source": media.source(), "embeddingMode": mode}
        body = build_request("video", payload, purpose=p, dimension=d)
        options = f"{mode}:{media.format}"
        if mode == "AUDIO_VIDEO_SEPARATE":
            types = ("VIDEO", "AUDIO")
            keys = self._cache_keys("video", d, p, options, media.data, types)
            return self._answer(NovaRequest(body, types, keys, separate=True))
        keys = self._cache_keys("video", d, p, options, media.data)
        return self._answer_one(NovaRequest(body, ("AUDIO_VIDEO_COMBINED", "VIDEO"), keys))


def _default_region() -> str:
    import boto3

    return boto3.Session().region_name or "us-east-1"
