"""Similar products: ranked by the product's own stored vectors, never itself, no embedding call."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal_search.datasets import load_abo, write_sample_catalog
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import InvalidInputError, ProductNotFoundError
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.testing import FakeBedrock
from tests.store_helpers import fake_store

DIM = 256


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_catalog(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module", params=["local", "s3"])
def indexed(request: pytest.FixtureRequest, root: Path) -> tuple[CrossmodalSearcher, FakeBedrock]:
    bedrock = FakeBedrock()
    store = fake_store(request.param, DIM)
    searcher = CrossmodalSearcher(NovaEmbeddings(client=bedrock.client(), dimension=DIM), store)
    assert not searcher.index(load_abo(root).products).failed
    return searcher, bedrock


def test_similar_products_cost_no_embedding_call_and_never_the_product_itself(
    indexed: tuple[CrossmodalSearcher, FakeBedrock],
) -> None:
    searcher, bedrock = indexed
    calls = bedrock.calls
    hits = searcher.similar("B0SAMPLE21", top_k=8)  # green sneakers
    assert bedrock.calls == calls
    ids = [h.product_id for h in hits]
    assert len(ids) == 8 and "B0SAMPLE21" not in ids and len(set(ids)) == 8
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.score == h.similarity for h in hits)
    # Its nearest neighbours share its colour or its kind (sneakers, or green things).
    for hit in hits[:3]:
        colors = hit.metadata.get("color", [])
        assert (isinstance(colors, list) and "green" in colors) or hit.metadata.get(
            "product_type"
        ) == "SHOES"


def test_similar_honours_filters_and_modes(indexed: tuple[CrossmodalSearcher, FakeBedrock]) -> None:
    searcher, _ = indexed
    shoes = searcher.similar("B0SAMPLE21", top_k=10, filter={"product_type": "SHOES"})
    assert shoes and all(h.metadata["product_type"] == "SHOES" for h in shoes)
    assert "B0SAMPLE21" not in {h.product_id for h in shoes}
    by_image = searcher.similar("B0SAMPLE21", top_k=3, search_mode="image")
    assert all(h.matched_type == "image" for h in by_image)


def test_similar_refuses_unknown_products_and_bad_arguments(
    indexed: tuple[CrossmodalSearcher, FakeBedrock],
) -> None:
    searcher, _ = indexed
    with pytest.raises(ProductNotFoundError, match="no product 'NOPE'") as info:
        searcher.similar("NOPE")
    assert info.value.product_id == "NOPE"
    with pytest.raises(InvalidInputError, match="top_k"):
        searcher.similar("B0SAMPLE21", top_k=0)
    with pytest.raises(InvalidInputError, match="search_mode"):
        searcher.similar("B0SAMPLE21", search_mode="smell")  # type: ignore[arg-type]
