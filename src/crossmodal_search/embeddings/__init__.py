"""Embedding backends: Amazon Nova (Bedrock) and a deterministic offline embedder."""

from crossmodal_search._types import EmbeddingPurpose
from crossmodal_search.embeddings._protocol import Embedder, ImageInput

__all__ = ["Embedder", "EmbeddingPurpose", "ImageInput"]
