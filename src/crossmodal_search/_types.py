"""Shared value types: vectors, metadata, purposes, metrics. No behaviour lives here."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from crossmodal_search._constants import NOVA_DIMENSIONS as NOVA_DIMENSIONS

#: A 1-D float32 vector (or an (n, d) matrix where documented).
Vector: TypeAlias = npt.NDArray[np.float32]

#: Metadata values S3 Vectors accepts: string, number, boolean, or a list of those.
Scalar: TypeAlias = str | int | float | bool
MetadataValue: TypeAlias = Scalar | list[Scalar]
Metadata: TypeAlias = Mapping[str, MetadataValue]

#: A filter in the S3 Vectors metadata filter language.
Filter: TypeAlias = Mapping[str, object]

DistanceMetric: TypeAlias = Literal["cosine", "euclidean"]


NOVA_MODEL_ID = "amazon.nova-2-multimodal-embeddings-v1:0"


class EmbeddingPurpose(str, enum.Enum):
    """Nova's ``embeddingPurpose``: ``GENERIC_INDEX`` to index, a ``*_RETRIEVAL`` value to query."""

    GENERIC_INDEX = "GENERIC_INDEX"
    GENERIC_RETRIEVAL = "GENERIC_RETRIEVAL"
    TEXT_RETRIEVAL = "TEXT_RETRIEVAL"
    IMAGE_RETRIEVAL = "IMAGE_RETRIEVAL"
    VIDEO_RETRIEVAL = "VIDEO_RETRIEVAL"
    DOCUMENT_RETRIEVAL = "DOCUMENT_RETRIEVAL"
    AUDIO_RETRIEVAL = "AUDIO_RETRIEVAL"
    CLASSIFICATION = "CLASSIFICATION"
    CLUSTERING = "CLUSTERING"

    def __str__(self) -> str:
        return self.value


PurposeLike: TypeAlias = EmbeddingPurpose | str
