"""Embedder adapters the evaluation needs: call counting (with an optional memo) and truncation."""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

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


_EmbedKind: TypeAlias = Literal["text", "image"]


class _Wrapper(ABC):
    """The embedder surface both wrappers share; subclasses implement :meth:`_embed_many`."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def _embed_many(
        self,
        kind: _EmbedKind,
        items: Sequence[Any],
        purpose: PurposeLike,
        dimension: int | None,
    ) -> Vector:
        """Vectors of ``items`` (texts or images), one row each."""

    def _inner_many(
        self,
        kind: _EmbedKind,
        items: Sequence[Any],
        purpose: PurposeLike,
        dimension: int | None,
    ) -> Vector:
        embed = self._inner.embed_texts if kind == "text" else self._inner.embed_images
        return embed(items, purpose=purpose, dimension=dimension)

    def embed_text(
        self, text: str, *, purpose: PurposeLike = _DEFAULT_PURPOSE, dimension: int | None = None
    ) -> Vector:
        out: Vector = self._embed_many("text", [text], purpose, dimension)[0]
        return out

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        return self._embed_many("text", texts, purpose, dimension)

    def embed_image(
        self,
        image: ImageInput,
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        out: Vector = self._embed_many("image", [image], purpose, dimension)[0]
        return out

    def embed_images(
        self,
        images: Sequence[ImageInput],
        *,
        purpose: PurposeLike = _DEFAULT_PURPOSE,
        dimension: int | None = None,
    ) -> Vector:
        return self._embed_many("image", images, purpose, dimension)


class CountingEmbedder(_Wrapper):
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
        super().__init__(inner)
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
    def dimension(self) -> int:
        """The wrapped embedder's dimension."""
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

    def _embed_many(
        self,
        kind: _EmbedKind,
        items: Sequence[Any],
        purpose: PurposeLike,
        dimension: int | None,
    ) -> Vector:
        if not items:
            return self._inner_many(kind, items, purpose, dimension)
        keys: list[Hashable | None] = []
        for item in items:
            ident = item if kind == "text" else _image_key(item)
            keys.append(None if ident is None else (kind, ident, str(purpose), dimension))
        return self._run(
            keys,
            lambda idx: np.asarray(
                self._inner_many(kind, [items[i] for i in idx], purpose, dimension),
                dtype=np.float32,
            ).reshape(len(idx), -1),
        )


def _truncate(vectors: Vector, dimension: int) -> Vector:
    from crossmodal_search.stores import truncate_dimension

    return np.asarray(truncate_dimension(vectors, dimension), dtype=np.float32)


class TruncatingEmbedder(_Wrapper):
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
        super().__init__(inner)
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        """The truncated dimension every vector is cut to (and re-normalised)."""
        return self._dimension

    def _target(self, dimension: int | None) -> int:
        if dimension is not None and dimension != self._dimension:
            raise DimensionMismatchError(
                f"this embedder produces {self._dimension}-d vectors, {dimension} was asked",
                expected=self._dimension,
                actual=dimension,
            )
        return self._dimension

    def _embed_many(
        self,
        kind: _EmbedKind,
        items: Sequence[Any],
        purpose: PurposeLike,
        dimension: int | None,
    ) -> Vector:
        target = self._target(dimension)
        if not items:
            return np.zeros((0, target), dtype=np.float32)
        full = np.asarray(self._inner_many(kind, items, purpose, None), dtype=np.float32)
        return _truncate(full.reshape(len(items), -1), target)
