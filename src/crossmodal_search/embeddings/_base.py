"""The embedder base class: inputs are checked and batched once, a backend writes one method.

:class:`~crossmodal_search.embeddings.Embedder` is the structural seam the searcher types
against; :class:`BaseEmbedder` is how this package's embedders implement it. Its four public
methods check the purpose and the dimension, check and read every input before the first one is
embedded (a blank text, a missing or empty image file and an input of the wrong type are refused
here), and hand the whole batch to :meth:`BaseEmbedder._embed` as :class:`EmbedInput` values.
A backend writes that one method::

    class MyEmbedder(BaseEmbedder):
        model_id = "my-model-v1"
        dimension = 512

        def _embed(self, items, *, purpose, dimension):
            return np.stack([my_model(item, dimension) for item in items])
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeGuard

import numpy as np

from crossmodal_search._types import EmbeddingPurpose, PurposeLike, Vector
from crossmodal_search.embeddings._media import S3Source, read_path, s3_or_none
from crossmodal_search.errors import (
    DimensionMismatchError,
    InvalidInputError,
    UnsupportedMediaError,
)

if TYPE_CHECKING:
    from PIL import Image

    from crossmodal_search.embeddings._protocol import ImageInput

__all__ = ["BaseEmbedder", "EmbedInput", "InputKind", "Media", "check_text", "parse_purpose"]

#: What an :class:`EmbedInput` holds.
InputKind: TypeAlias = Literal["text", "image"]


def parse_purpose(purpose: PurposeLike) -> EmbeddingPurpose:
    """The :class:`EmbeddingPurpose` named by ``purpose``, or :class:`InvalidInputError`."""
    try:
        return EmbeddingPurpose(purpose)
    except ValueError:
        raise InvalidInputError(
            f"unknown embedding purpose {purpose!r}; one of "
            f"{', '.join(p.value for p in EmbeddingPurpose)}"
        ) from None


def check_text(text: object, label: str = "text") -> str:
    """``text`` when it is a str with something besides white space, else InvalidInputError."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{label} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{label} must not be empty or whitespace only")
    return text


def _is_pil(value: object) -> TypeGuard[Image.Image]:
    from PIL import Image

    return isinstance(value, Image.Image)


@dataclass(frozen=True, slots=True)
class Media:
    """Content other than inline text, read once: bytes, a Pillow image, or an object in S3.

    Exactly one of ``data``, ``image`` and ``s3`` is set. ``format`` is the format a caller
    declared for an S3 object whose key does not tell it.
    """

    data: bytes | None = None
    image: Image.Image | None = None
    s3: S3Source | None = None
    format: str | None = None

    @property
    def source(self) -> bytes | Image.Image | S3Source:
        """Whichever of ``data``, ``image`` and ``s3`` is set."""
        if self.data is not None:
            return self.data
        if self.image is not None:
            return self.image
        assert self.s3 is not None, "Media holds nothing"
        return self.s3


@dataclass(frozen=True, slots=True)
class EmbedInput:
    """One checked input of a batch, as :meth:`BaseEmbedder._embed` receives it.

    Attributes:
        kind: ``"text"`` or ``"image"``.
        label: how error messages name it (``"texts[2]"``, ``"image 'shoe.jpg'"``).
        text: the text, for inline text.
        media: the image; or, for a text, the S3 object holding it.
        mode: how the backend reads this input where it offers a choice (Nova: the text's
            truncation mode, the image's detail level); ``None`` means its default.
    """

    kind: InputKind
    label: str
    text: str | None = None
    media: Media | None = None
    mode: str | None = None

    @classmethod
    def of_text(cls, text: object, *, label: str = "text", mode: str | None = None) -> EmbedInput:
        """A checked inline text."""
        return cls("text", label, text=check_text(text, label), mode=mode)

    @classmethod
    def of_image(
        cls,
        image: object,
        *,
        label: str = "image",
        mode: str | None = None,
        format: str | None = None,
    ) -> EmbedInput:
        """An image input read into :class:`Media`: a local file is read now, S3 is not.

        Raises:
            InvalidInputError: a type that is not an image input; ``format`` for a local image.
            UnsupportedMediaError: a missing, unreadable or empty file; empty bytes.
        """
        s3 = s3_or_none(image)
        if s3 is not None:
            return cls("image", label, media=Media(s3=s3, format=format), mode=mode)
        if format is not None:
            raise InvalidInputError(
                f"{label}: format= is only for s3:// sources; local images are detected from bytes"
            )
        if isinstance(image, (bytes, bytearray, memoryview)):
            media = Media(data=bytes(image))
        elif isinstance(image, (str, os.PathLike)):
            media, label = Media(data=read_path(image, "image")), f"{label} {str(image)!r}"
        elif _is_pil(image):
            media = Media(image=image)
        else:
            raise InvalidInputError(
                f"{label}: expected bytes, a path, an s3:// URI, an S3Source or a PIL image, "
                f"got {type(image).__name__}"
            )
        if media.data is not None and not media.data:
            raise UnsupportedMediaError(f"{label}: zero-length image data")
        return cls("image", label, media=media, mode=mode)


class BaseEmbedder(ABC):
    """Implements :class:`~crossmodal_search.embeddings.Embedder` over one batch method.

    ``embed_text``, ``embed_texts``, ``embed_image`` and ``embed_images`` check the purpose
    (coerced to :class:`EmbeddingPurpose`), the dimension (``None``: the default) and every
    input, then call :meth:`_embed` once with the whole batch, never with an empty one, and
    check that it answered one float32 row per input. A subclass provides ``model_id``,
    ``dimension`` and :meth:`_embed`; it may narrow what it accepts by overriding
    :meth:`_check_dimension`, :meth:`_text_input` or :meth:`_image_input`.
    """

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Identifies the model (part of cache and ingestion content keys)."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Default output dimension."""

    @abstractmethod
    def _embed(
        self, items: Sequence[EmbedInput], *, purpose: EmbeddingPurpose, dimension: int
    ) -> Vector:
        """One row per item, ``(len(items), dimension)``, in order; ``items`` is never empty."""

    # ---------------------------------------------------------------- the Embedder methods

    def embed_text(
        self,
        text: str,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
    ) -> Vector:
        """Embed one text; a ``(d,)`` float32 vector."""
        return self._embed_checked("text", [text], purpose, dimension)

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
    ) -> Vector:
        """Embed many texts, all checked first; an ``(n, d)`` float32 array in input order."""
        return self._embed_checked("text", texts, purpose, dimension, batch=True)

    def embed_image(
        self,
        image: ImageInput,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
    ) -> Vector:
        """Embed one image (bytes, path, ``s3://`` URI or PIL image); a ``(d,)`` vector."""
        return self._embed_checked("image", [image], purpose, dimension)

    def embed_images(
        self,
        images: Sequence[ImageInput],
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
    ) -> Vector:
        """Embed many images, all read first; an ``(n, d)`` float32 array in input order."""
        return self._embed_checked("image", images, purpose, dimension, batch=True)

    # ---------------------------------------------------------------- checks

    def _check_dimension(self, dimension: object) -> int:
        """``dimension`` as an int this embedder can produce, else InvalidInputError."""
        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)):
            raise InvalidInputError(f"dimension must be a positive int, got {dimension!r}")
        if dimension < 1:
            raise InvalidInputError(f"dimension must be a positive int, got {dimension}")
        return int(dimension)

    def _text_input(self, text: object, label: str, mode: str | None = None) -> EmbedInput:
        """One text checked into an :class:`EmbedInput`."""
        return EmbedInput.of_text(text, label=label, mode=mode)

    def _image_input(
        self, image: object, label: str, mode: str | None = None, format: str | None = None
    ) -> EmbedInput:
        """One image input read into an :class:`EmbedInput`."""
        return EmbedInput.of_image(image, label=label, mode=mode, format=format)

    def _embed_checked(
        self,
        kind: InputKind,
        values: Sequence[object],
        purpose: PurposeLike,
        dimension: int | None,
        *,
        batch: bool = False,
        mode: str | None = None,
        format: str | None = None,
        label: str | None = None,
    ) -> Vector:
        """The four public methods in one: settings, then every input, then :meth:`_embed`.

        With ``batch``, inputs are named ``texts[i]``/``images[i]``, a lone str or bytes is
        refused, and the answer is ``(n, d)``; otherwise ``values`` holds one input, named
        ``label`` (default: ``kind``), and the answer is its ``(d,)`` vector.
        """
        p = parse_purpose(purpose)
        d = self.dimension if dimension is None else self._check_dimension(dimension)
        if batch:
            if isinstance(values, (str, bytes, bytearray)) or _is_pil(values):
                what = ("str", "str") if kind == "text" else ("images", "image")
                raise InvalidInputError(
                    f"embed_{kind}s takes a sequence of {what[0]}, not one {what[1]}"
                )
            values = list(values)
        labels = [f"{kind}s[{i}]" for i in range(len(values))] if batch else [label or kind]
        if kind == "text":
            items = [self._text_input(v, n, mode) for v, n in zip(values, labels, strict=True)]
        else:
            items = [
                self._image_input(v, n, mode, format) for v, n in zip(values, labels, strict=True)
            ]
        if not items:
            return np.zeros((0, d), dtype=np.float32)
        out = np.asarray(self._embed(items, purpose=p, dimension=d), dtype=np.float32)
        if out.shape != (len(items), d):
            raise DimensionMismatchError(
                f"{type(self).__name__} answered {len(items)} inputs with shape {out.shape}, "
                f"expected ({len(items)}, {d})",
                expected=d,
                actual=int(out.shape[-1]) if out.ndim else 0,
            )
        if batch:
            return out
        row: Vector = out[0]
        return row
