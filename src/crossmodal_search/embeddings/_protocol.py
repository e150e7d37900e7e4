"""The :class:`Embedder` seam: what the searcher needs from any embedding backend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from crossmodal_search._types import PurposeLike, Vector

if TYPE_CHECKING:
    from PIL import Image

#: An image given as raw bytes, a local path, an ``s3://`` URI string or a Pillow image.
ImageInput: TypeAlias = "bytes | str | os.PathLike[str] | Image.Image"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts and images into vectors of one shared space.

    ``NovaEmbeddings`` (Amazon Bedrock) and ``OfflineEmbedder`` (deterministic, no network)
    implement it, both by building on :class:`~crossmodal_search.embeddings.BaseEmbedder` (a new
    backend writes one batch method there); any class with these members fits. Every method
    returns float32 arrays; single inputs give shape ``(d,)``, batches ``(n, d)`` in input
    order. ``dimension=None`` means the embedder's default.
    """

    @property
    def model_id(self) -> str:
        """Identifies the model (part of cache and ingestion content keys)."""
        ...

    @property
    def dimension(self) -> int:
        """Default output dimension."""
        ...

    def embed_text(
        self,
        text: str,
        *,
        purpose: PurposeLike = ...,
        dimension: int | None = None,
    ) -> Vector:
        """Embed one text; a ``(d,)`` float32 vector."""
        ...

    def embed_image(
        self,
        image: ImageInput,
        *,
        purpose: PurposeLike = ...,
        dimension: int | None = None,
    ) -> Vector:
        """Embed one image (bytes, path, ``s3://`` URI or PIL image); a ``(d,)`` vector."""
        ...

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        purpose: PurposeLike = ...,
        dimension: int | None = None,
    ) -> Vector:
        """Embed many texts; an ``(n, d)`` float32 array in input order."""
        ...

    def embed_images(
        self,
        images: Sequence[ImageInput],
        *,
        purpose: PurposeLike = ...,
        dimension: int | None = None,
    ) -> Vector:
        """Embed many images; an ``(n, d)`` float32 array in input order."""
        ...
