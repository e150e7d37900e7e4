"""BaseEmbedder: what every backend gets from it (checks, batching, the shape contract)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from crossmodal_search._types import EmbeddingPurpose
from crossmodal_search.embeddings import BaseEmbedder, Embedder, EmbedInput, S3Source
from crossmodal_search.errors import (
    DimensionMismatchError,
    InvalidInputError,
    UnsupportedMediaError,
)
from tests.embeddings_helpers import image_bytes


class Recording(BaseEmbedder):
    """A backend that records each batch it is given and answers ``rows`` (default: ones)."""

    def __init__(self, dimension: int = 8, rows: npt.NDArray[np.float32] | None = None) -> None:
        self._dim = dimension
        self.rows = rows
        self.batches: list[tuple[list[EmbedInput], EmbeddingPurpose, int]] = []

    @property
    def model_id(self) -> str:
        return "recording"

    @property
    def dimension(self) -> int:
        return self._dim

    def _embed(
        self, items: Sequence[EmbedInput], *, purpose: EmbeddingPurpose, dimension: int
    ) -> npt.NDArray[np.float32]:
        self.batches.append((list(items), purpose, dimension))
        if self.rows is not None:
            return self.rows
        return np.ones((len(items), dimension), dtype=np.float32)


def test_a_backend_writing_one_method_is_an_embedder() -> None:
    emb = Recording()
    assert isinstance(emb, Embedder)
    assert emb.embed_text("red dress").shape == (8,)
    assert emb.embed_texts(["a", "b", "c"], dimension=4).shape == (3, 4)
    assert emb.embed_image(image_bytes()).dtype == np.float32
    assert emb.embed_images([image_bytes(), image_bytes()]).shape == (2, 8)
    assert len(emb.batches) == 4  # one call per public call, whole batches at once


def test_inputs_arrive_checked_named_and_read(tmp_path: Path) -> None:
    path = tmp_path / "shoe.png"
    path.write_bytes(image_bytes())
    pil = Image.new("RGB", (4, 4))
    emb = Recording()
    emb.embed_texts(["red dress", "blue shirt"], purpose="GENERIC_RETRIEVAL")
    emb.embed_images([path, "s3://bkt/a.png", pil], dimension=16)

    (texts, purpose, dimension), (images, _, image_dimension) = emb.batches
    assert [(i.kind, i.label, i.text) for i in texts] == [
        ("text", "texts[0]", "red dress"),
        ("text", "texts[1]", "blue shirt"),
    ]
    assert purpose is EmbeddingPurpose.GENERIC_RETRIEVAL and dimension == 8
    assert image_dimension == 16
    local, s3, decoded = (i.media for i in images)
    assert local is not None and local.data == path.read_bytes()
    assert images[0].label == f"images[0] {str(path)!r}"
    assert s3 is not None and s3.s3 == S3Source("s3://bkt/a.png") and s3.data is None
    assert decoded is not None and decoded.image is pil


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda e: e.embed_texts(["ok", "   "]), InvalidInputError, r"texts\[1\]"),
        (lambda e: e.embed_texts(["ok", 5]), InvalidInputError, r"texts\[1\] must be a str"),
        (lambda e: e.embed_text(""), InvalidInputError, "empty"),
        (lambda e: e.embed_texts("abc"), InvalidInputError, "sequence of str"),
        (lambda e: e.embed_images("a.png"), InvalidInputError, "sequence of images"),
        (lambda e: e.embed_images(b"\x89PNG"), InvalidInputError, "sequence of images"),
        (lambda e: e.embed_images([image_bytes(), b""]), UnsupportedMediaError, "zero-length"),
        (lambda e: e.embed_image("missing.png"), UnsupportedMediaError, "not found"),
        (lambda e: e.embed_image(3.5), InvalidInputError, "got float"),
        (lambda e: e.embed_text("a", purpose="SOMETHING"), InvalidInputError, "purpose"),
        (lambda e: e.embed_texts([], purpose="SOMETHING"), InvalidInputError, "purpose"),
        (lambda e: e.embed_text("a", dimension=0), InvalidInputError, "dimension"),
        (lambda e: e.embed_text("a", dimension=True), InvalidInputError, "dimension"),
    ],
)
def test_bad_input_is_refused_before_the_backend_is_called(
    call: object, error: type[Exception], match: str
) -> None:
    emb = Recording()
    with pytest.raises(error, match=match):
        call(emb)  # type: ignore[operator]
    assert emb.batches == []


def test_an_empty_batch_never_reaches_the_backend() -> None:
    emb = Recording(dimension=8)
    assert emb.embed_texts([]).shape == (0, 8)
    assert emb.embed_images([], dimension=4).shape == (0, 4)
    assert emb.batches == []


def test_a_backend_answering_the_wrong_shape_is_caught() -> None:
    emb = Recording(dimension=8, rows=np.ones((2, 7), dtype=np.float32))
    with pytest.raises(DimensionMismatchError) as info:
        emb.embed_texts(["a", "b"])
    assert (info.value.expected, info.value.actual) == (8, 7)
    emb.rows = np.ones((1, 8), dtype=np.float32)
    with pytest.raises(DimensionMismatchError, match="2 inputs"):
        emb.embed_texts(["a", "b"])


def test_answers_are_float32_whatever_the_backend_returns() -> None:
    emb = Recording(dimension=3, rows=np.array([[1.0, 2.0, 3.0]]))
    vec = emb.embed_text("a")
    assert vec.dtype == np.float32 and vec.tolist() == [1.0, 2.0, 3.0]
