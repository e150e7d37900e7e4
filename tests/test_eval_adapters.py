"""Embedder adapters used by the harness: counting with a memo, and Matryoshka truncation."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from crossmodal_search.embeddings import NovaEmbeddings, OfflineEmbedder
from crossmodal_search.errors import DimensionMismatchError
from crossmodal_search.evaluation import CountingEmbedder, TruncatingEmbedder
from crossmodal_search.stores import truncate_dimension
from crossmodal_search.testing import FakeBedrock
from tests.eval_helpers import photo


def test_counting_without_memo_forwards_everything():
    inner = OfflineEmbedder(dimension=256)
    counting = CountingEmbedder(inner)
    a = counting.embed_text("red mug", purpose="GENERIC_RETRIEVAL")
    b = counting.embed_texts(["red mug", "blue mug"], purpose="GENERIC_RETRIEVAL")
    assert np.array_equal(a, inner.embed_text("red mug", purpose="GENERIC_RETRIEVAL"))
    assert b.shape == (2, 256)
    assert (counting.requested, counting.executed) == (3, 3)
    assert counting.bedrock_calls is None
    assert counting.model_id == inner.model_id and counting.dimension == 256


def test_memo_reuses_vectors_per_input_purpose_and_file_version(tmp_path):
    bedrock = FakeBedrock()
    counting = CountingEmbedder(
        NovaEmbeddings(client=bedrock.client(), dimension=256), memoize=True
    )
    first = counting.embed_texts(["red", "blue", "red"], purpose="TEXT_RETRIEVAL")
    assert np.array_equal(first[0], first[2])
    counting.embed_text("red", purpose="TEXT_RETRIEVAL")
    counting.embed_text("red", purpose="IMAGE_RETRIEVAL")  # another purpose: another vector
    assert counting.requested == 5
    assert counting.executed == bedrock.calls == counting.bedrock_calls == 3  # red, blue, red/IMAGE

    path = photo(tmp_path, "red")
    counting.embed_image(path, purpose="IMAGE_RETRIEVAL")
    counting.embed_image(path, purpose="IMAGE_RETRIEVAL")
    assert bedrock.calls == 4
    Image.new("RGB", (64, 64), (0, 0, 255)).save(path)  # the file changed: embed again
    os.utime(path, ns=(1, 1))
    blue = counting.embed_image(path, purpose="IMAGE_RETRIEVAL")
    assert bedrock.calls == 5
    pil = Image.new("RGB", (64, 64), (0, 0, 255))
    assert np.allclose(counting.embed_image(pil, purpose="IMAGE_RETRIEVAL"), blue, atol=1e-6)
    counting.embed_image(pil, purpose="IMAGE_RETRIEVAL")  # Pillow images are never memoised
    assert bedrock.calls == 7
    assert counting.requested == 10


def test_truncating_embedder_matches_stored_vector_truncation():
    inner = OfflineEmbedder(dimension=1024)
    small = TruncatingEmbedder(inner, 256)
    assert small.dimension == 256 and small.model_id == inner.model_id
    full = inner.embed_texts(["red dress", "blue mug"], purpose="GENERIC_RETRIEVAL")
    got = small.embed_texts(["red dress", "blue mug"], purpose="GENERIC_RETRIEVAL")
    assert np.allclose(got, truncate_dimension(full, 256))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0)
    assert small.embed_text("red", dimension=256).shape == (256,)
    assert small.embed_texts([]).shape == (0, 256)
    with pytest.raises(DimensionMismatchError):
        small.embed_text("red", dimension=384)
    with pytest.raises(DimensionMismatchError):
        TruncatingEmbedder(inner, 3072)
