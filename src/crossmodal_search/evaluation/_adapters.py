"""Embedder adapters the evaluation needs: call counting (with an optional memo) and truncation."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from crossmodal_search._types import EmbeddingPurpose, PurposeLike, Vector
from crossmodal_search.errors import DimensionMismatchError

if TYPE_CHECKING:
    from crossmodal_search.embeddings import Embedder, ImageInput

__all__ = ["CountingEmbedder", "TruncatingEmbedder"]

_DEFAULT_PURPOSE = EmbeddingPurpose.GENERIC_RETRIEVAL


def _image_key(image: ImageInput) -> Hashable | None:
    if isinstance(image, bytes):
        return ("bytes", hashlib.sha256(image).hexdigest())
    if isinstance(image, str | os.PathLike):
        path = os.fspath(image)
        if path.startswith("s3://"):
            return ("s3", path)
        try:
            stat = os.stat(path)
        except OSError:
            return None  # let the inner embedder raise its own error
        return ("path", os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    return None  # a Pillow image: no cheap identity, never memoised


class CountingEmbedder:
    """Wraps any :class:`~crossmodal_search.embeddings.Embedder` and counts what it embeds.

    ``requested`` counts every text or image asked for: for Nova, whose synchronous API
    embeds one input per ``InvokeModel``, that is the number of Bedrock calls a deployment
    pays without caching. ``executed`` counts the inputs actually passed to the wrapped
    embedder, which is lower when ``memoize=True`` lets repeated inputs (the same query run
    under several settings) reuse a vector. :attr:`bedrock_calls` reads the wrapped
    embedder's own ``calls`` counter (``NovaEmbeddings`` has one) and is ``None`` otherwise.

    Example:
        >>> counting = CountingEmbedder(OfflineEmbedder(dimension=256))  # doctest: +SKIP
        >>> _ = counting.embed_text("red dress")  # doctest: +SKIP
        >>> counting.requested  # doctest: +SKIP
        1
    """

    def __init__(self, inner: Embedder, *, memoize: bool = False) -> None:
        self._inner = inner
        self._memoize = memoize
        self._memo: dict[Hashable, Vector] = {}
        self._lock = threading.Lock()
        self.requested = 0
        self.executed = 0

    @property
    def inner(self) -> Embedder:
        """The wrapped embedder."""
        return self._inner

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def bedrock_calls(self) -> int | None:
        """The wrapped embedder's ``calls`` counter, if it has one (``NovaEmbeddings``)."""
        calls = getattr(self._inner, "calls", None)
        return calls if isinstance(calls, int) and not isinstance(calls, bool) else None

    def snapshot(self) -> tuple[int, int, int | None]:
        """``(requested, executed, bedrock_calls)`` right now, to diff around a run."""
        with self._lock:
            return self.requested, self.executed, self.bedrock_calls

    def _run(
        self,
        keys: Sequence[Hashable | None],
        compute: Callable[[list[int]], Vector],
    ) -> Vector:
        """Vectors for ``len(keys)`` inputs; ``compute(indexes)`` embeds the ones not memoised.

        With the memo, an input repeated within one call is also embedded once.
        """
        with self._lock:
            self.requested += len(keys)
            cached = {
                i: self._memo[k]
                for i, k in enumerate(keys)
                if self._memoize and k is not None and k in self._memo
            }
        todo: list[int] = []
        first: dict[Hashable, int] = {}  # key -> row in ``todo`` that computes it
        source: dict[int, int] = {}  # input index -> row of its vector in ``fresh``
        for i, k in enumerate(keys):
            if i in cached:
                continue
            if self._memoize and k is not None and k in first:
                source[i] = first[k]
                continue
            source[i] = len(todo)
            if self._memoize and k is not None:
                first[k] = len(todo)
            todo.append(i)
        fresh = compute(todo) if todo else np.zeros((0, 0), dtype=np.float32)
        with self._lock:
            self.executed += len(todo)
            if self._memoize:
                for row, i in enumerate(todo):
                    if keys[i] is not None:
                        self._memo[keys[i]] = fresh[row]
        width = fresh.shape[1] if todo else next(iter(cached.values())).shape[0]
        out = np.empty((len(keys), width), dtype=np.float32)
        for i, vec in cached.items():
            out[i] = vec
        for i, row in source.items():
            out[i] = fresh[row]
        return out

    def embed_text(
        self, text: str, *, purpose: PurposeLike = _DEFAULT_PURPOSE, dimension: int | None = None
    ) -> Vector:
        out: Vector = self.embed_texts([text], purpose=purpose, dimension=dimension)[0]
        return out

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        if not texts:
            return self._inner.embed_texts(texts, purpose=purpose, dimension=dimension)
        keys = [("text", t, str(purpose), dimension) for t in texts]
        return self._run(
            keys,
            lambda idx: np.asarray(
                self._inner.embed_texts(
                    [texts[i] for i in idx], purpose=purpose, dimension=dimension
                ),
                dtype=np.float32,
            ).reshape(len(idx), -1),
        )

    def embed_image(
        self,
        image: ImageInput,
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        out: Vector = self.embed_images([image], purpose=purpose, dimension=dimension)[0]
        return out

    def embed_images(
        self,
        images: Sequence[ImageInput],
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        if not images:
            return self._inner.embed_images(images, purpose=purpose, dimension=dimension)
        keys: list[Hashable | None] = []
        for image in images:
            ident = _image_key(image)
            keys.append(None if ident is None else ("image", ident, str(purpose), dimension))
        return self._run(
            keys,
            lambda idx: np.asarray(
                self._inner.embed_images(
                    [images[i] for i in idx], purpose=purpose, dimension=dimension
                ),
                dtype=np.float32,
            ).reshape(len(idx), -1),
        )


def _truncate(vectors: Vector, dimension: int) -> Vector:
    from crossmodal_search.stores import truncate_dimension

    return np.asarray(truncate_dimension(vectors, dimension), dtype=np.float32)


class TruncatingEmbedder:
    """Embeds with the wrapped embedder's own dimension, then keeps the first ``dimension`` values.

    This is Matryoshka truncation plus re-normalisation, the same operation applied to the
    stored vectors in a dimension sweep, so queries and stored vectors stay comparable. It is
    not re-embedding at the smaller dimension (for Nova the two are close but not identical).
    """

    def __init__(self, inner: Embedder, dimension: int) -> None:
        if dimension > inner.dimension:
            raise DimensionMismatchError(
                f"cannot truncate {inner.dimension}-d vectors to {dimension}",
                expected=inner.dimension,
                actual=dimension,
            )
        self._inner = inner
        self._dimension = dimension

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    def _target(self, dimension: int | None) -> int:
        if dimension is not None and dimension != self._dimension:
            raise DimensionMismatchError(
                f"this embedder produces {self._dimension}-d vectors, {dimension} was asked",
                expected=self._dimension,
                actual=dimension,
            )
        return self._dimension

    def embed_text(
        self, text: str, *, purpose: PurposeLike = _DEFAULT_PURPOSE, dimension: int | None = None
    ) -> Vector:
        out: Vector = self.embed_texts([text], purpose=purpose, dimension=dimension)[0]
        return out

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        target = self._target(dimension)
        if not texts:
            return np.zeros((0, target), dtype=np.float32)
        full = np.asarray(self._inner.embed_texts(texts, purpose=purpose), dtype=np.float32)
        return _truncate(full.reshape(len(texts), -1), target)

    def embed_image(
        self,
        image: ImageInput,
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        out: Vector = self.embed_images([image], purpose=purpose, dimension=dimension)[0]
        return out

    def embed_images(
        self,
        images: Sequence[ImageInput],
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        target = self._target(dimension)
        if not images:
            return np.zeros((0, target), dtype=np.float32)
        full = np.asarray(self._inner.embed_images(images, purpose=purpose), dtype=np.float32)
        return _truncate(full.reshape(len(images), -1), target)
