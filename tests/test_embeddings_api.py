"""The public surface of crossmodal_search.embeddings and crossmodal_search.testing."""

from __future__ import annotations

import importlib

import pytest
from typing_extensions import assert_type

from crossmodal_search._types import Vector
from crossmodal_search.embeddings import Embedder, NovaEmbeddings, OfflineEmbedder, make_embedder

MODULES = ["crossmodal_search.embeddings", "crossmodal_search.testing"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    # ruff's RUF022 order: SCREAMING_CASE constants first, then the rest alphabetically
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for attr in exported:
        assert getattr(module, attr) is not None
        assert not attr.startswith("_")


def test_nova_is_a_context_manager_that_closes_its_cache(tmp_path) -> None:
    from crossmodal_search.errors import ConfigurationError
    from crossmodal_search.testing import FakeBedrock

    with NovaEmbeddings(client=FakeBedrock().client(), cache=tmp_path / "c.sqlite") as emb:
        emb.embed_text("a")
        cache = emb.cache
    assert cache is not None
    with pytest.raises(ConfigurationError, match="closed"):
        len(cache)


def _static_types(nova: NovaEmbeddings, offline: OfflineEmbedder) -> None:
    """Checked by mypy (never run): the public methods' return types."""
    assert_type(nova.embed_text("a"), Vector)
    assert_type(nova.embed_texts(["a"]), Vector)
    assert_type(nova.embed_image(b""), Vector)
    assert_type(nova.embed_video(b""), Vector)
    assert_type(nova.embed_video(b"", embedding_mode="AUDIO_VIDEO_SEPARATE"), dict[str, Vector])
    assert_type(nova.calls, int)
    assert_type(offline.embed_images([b""]), Vector)
    embedder, why = make_embedder("offline")
    assert_type(embedder, Embedder)
    assert_type(why, str)
