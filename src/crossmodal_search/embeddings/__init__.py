"""Embedding backends: Amazon Nova (Bedrock), a deterministic offline embedder, and BaseEmbedder."""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from crossmodal_search._types import EmbeddingPurpose
from crossmodal_search.embeddings._base import BaseEmbedder, EmbedInput, Media
from crossmodal_search.embeddings._cache import EmbeddingCache
from crossmodal_search.embeddings._media import (
    AUDIO_FORMATS,
    IMAGE_FORMATS,
    INLINE_LIMIT_BYTES,
    VIDEO_FORMATS,
    PreparedMedia,
    S3Source,
    prepare_audio,
    prepare_image,
    prepare_video,
)
from crossmodal_search.embeddings._nova_wire import (
    DetailLevel,
    TruncationMode,
    VideoEmbeddingMode,
)
from crossmodal_search.embeddings._offline import OfflineEmbedder
from crossmodal_search.embeddings._protocol import Embedder, ImageInput
from crossmodal_search.embeddings._segments import (
    SYNC_TEXT_LIMIT_CHARS,
    Segment,
    SegmentationConfig,
    SegmentedResult,
    check_s3_uri,
    embed_pdf,
)
from crossmodal_search.embeddings._select import EmbedderKind, make_embedder

if TYPE_CHECKING:
    from crossmodal_search.embeddings._batch import BatchEmbeddingJobs, BatchRequest, BatchResult
    from crossmodal_search.embeddings._nova import NovaEmbeddings
    from crossmodal_search.embeddings._segmented import (
        SegmentedEmbeddingJobs,
        embed_text_document,
    )
    from crossmodal_search.embeddings._segmented_wire import SegmentedJob

#: Names whose modules import boto3/botocore/tenacity (the AWS layer), loaded on first use so
#: that the offline embedder and a local store never import them.
_LAZY: dict[str, str] = {
    "BatchEmbeddingJobs": "crossmodal_search.embeddings._batch",
    "BatchRequest": "crossmodal_search.embeddings._batch",
    "BatchResult": "crossmodal_search.embeddings._batch",
    "NovaEmbeddings": "crossmodal_search.embeddings._nova",
    "SegmentedEmbeddingJobs": "crossmodal_search.embeddings._segmented",
    "embed_text_document": "crossmodal_search.embeddings._segmented",
    "SegmentedJob": "crossmodal_search.embeddings._segmented_wire",
}

__all__ = [
    "AUDIO_FORMATS",
    "IMAGE_FORMATS",
    "INLINE_LIMIT_BYTES",
    "SYNC_TEXT_LIMIT_CHARS",
    "VIDEO_FORMATS",
    "BaseEmbedder",
    "BatchEmbeddingJobs",
    "BatchRequest",
    "BatchResult",
    "DetailLevel",
    "EmbedInput",
    "Embedder",
    "EmbedderKind",
    "EmbeddingCache",
    "EmbeddingPurpose",
    "ImageInput",
    "Media",
    "NovaEmbeddings",
    "OfflineEmbedder",
    "PreparedMedia",
    "S3Source",
    "Segment",
    "SegmentationConfig",
    "SegmentedEmbeddingJobs",
    "SegmentedJob",
    "SegmentedResult",
    "TruncationMode",
    "VideoEmbeddingMode",
    "check_s3_uri",
    "embed_pdf",
    "embed_text_document",
    "make_embedder",
    "prepare_audio",
    "prepare_image",
    "prepare_video",
]

#: Old names -> new ones. ``Async*`` promised an asyncio twin; these are Bedrock's asynchronous
#: invocations, whose methods block.
_DEPRECATED = {"AsyncEmbeddingJobs": "SegmentedEmbeddingJobs", "AsyncJob": "SegmentedJob"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    new = _DEPRECATED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"crossmodal_search.embeddings.{name} is deprecated; use {new} (the same class)",
        DeprecationWarning,
        stacklevel=2,
    )
    return __getattr__(new) if new in _LAZY else globals()[new]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
