"""The public surface of crossmodal_search.embeddings and crossmodal_search.testing."""

from __future__ import annotations

import importlib

import pytest

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
    from crossmodal_search.embeddings import NovaEmbeddings
    from crossmodal_search.errors import ConfigurationError
    from crossmodal_search.testing import FakeBedrock

    with NovaEmbeddings(client=FakeBedrock().client(), cache=tmp_path / "c.sqlite") as emb:
        emb.embed_text("a")
        cache = emb.cache
    assert cache is not None
    with pytest.raises(ConfigurationError, match="closed"):
        len(cache)
