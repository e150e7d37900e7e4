"""Hybrid search through the searcher: exact terms found, what matched said, words weighed,
no re-embedding to turn it on, and the sample evaluation's claim (hybrid wins on exact terms
and loses nothing on descriptions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal_search import CrossmodalSearcher, LocalVectorStore, OfflineEmbedder
from crossmodal_search.datasets import SAMPLE_QUERIES, load_abo, write_sample_catalog
from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.evaluation import compare, read_queries, write_sample_evaluation
from crossmodal_search.search import Product
from crossmodal_search.stores import TextField

DIM = 256


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_catalog(tmp_path_factory.mktemp("hybrid") / "catalog")


@pytest.fixture(scope="module")
def products(root: Path) -> list[Product]:
    return load_abo(root).products


@pytest.fixture(scope="module")
def searcher(products: list[Product]) -> CrossmodalSearcher:
    s = CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM))
    assert not s.index(products).failed
    return s


def _model(products: list[Product], pid: str) -> str:
    number = next(p for p in products if p.product_id == pid).metadata["model_number"]
    assert isinstance(number, str)
    return number


def test_indexing_makes_titles_descriptions_brands_and_model_numbers_searchable(
    searcher: CrossmodalSearcher,
) -> None:
    fields = searcher.store.text_fields  # type: ignore[attr-defined]
    assert [f.key for f in fields] == ["title", "text", "brand", "model_number"]


def test_a_model_number_is_found_by_its_words_and_not_by_meaning(
    searcher: CrossmodalSearcher, products: list[Product]
) -> None:
    number = _model(products, "B0SAMPLE20")  # the yellow sneakers
    hybrid = searcher.search(number, top_k=5)
    assert hybrid[0].product_id == "B0SAMPLE20"
    assert hybrid[0].matched_by == "both"
    assert set(hybrid[0].word_scores) == {"model_number"}
    assert hybrid[0].matched_words == number.split("-")  # "RS", "2424Y" as typed
    vectors = searcher.search(number, top_k=5, hybrid=False)
    assert vectors[0].product_id != "B0SAMPLE20"
    assert all(r.matched_by == "vector" and not r.word_scores for r in vectors)


def test_every_number_keeps_its_meaning_in_hybrid_results(searcher: CrossmodalSearcher) -> None:
    hits = searcher.search("Carryall bag", top_k=6)
    assert {h.product_id for h in hits[:3]} == {"B0SAMPLE32", "B0SAMPLE34", "B0SAMPLE36"}
    for h in hits:
        assert 0.0 <= h.score <= 1.0  # relative score fusion
        assert h.distance == pytest.approx(1.0 - h.similarity, abs=1e-6)
        assert h.part_similarities == {"text": pytest.approx(h.similarity, abs=1e-6)}
        if h.word_scores:
            assert h.matched_words
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_the_lexical_weight_moves_the_ranking_from_meaning_to_words(
    searcher: CrossmodalSearcher, products: list[Product]
) -> None:
    query = f"{_model(products, 'B0SAMPLE20')} sneakers"
    by_meaning = searcher.search(query, top_k=8, lexical_weight=0.0)
    vectors = searcher.search(query, top_k=8, hybrid=False)
    assert [h.product_id for h in by_meaning] == [h.product_id for h in vectors]
    by_words = searcher.search(query, top_k=8, lexical_weight=1.0)
    assert by_words[0].product_id == "B0SAMPLE20"
    with pytest.raises(InvalidInputError, match="lexical_weight"):
        searcher.search(query, lexical_weight=1.5)
    with pytest.raises(InvalidInputError, match="hybrid"):
        searcher.search(query, hybrid="yes")  # type: ignore[arg-type]


def test_a_photo_alone_is_searched_by_its_vector_and_words_weigh_the_text_share(
    searcher: CrossmodalSearcher, root: Path
) -> None:
    photo = next(q for q in SAMPLE_QUERIES if q.name == "image").image_path(root)
    assert photo is not None
    alone = searcher.search(image=str(photo), search_mode="image", hybrid=True)
    plain = searcher.search(image=str(photo), search_mode="image", hybrid=False)
    assert [h.product_id for h in alone] == [h.product_id for h in plain]
    no_text = searcher.search("RS", str(photo), search_mode="image", text_weight=0.0)
    assert all(h.matched_by == "vector" for h in no_text)


def test_hybrid_true_needs_a_store_with_text_fields(products: list[Product]) -> None:
    plain = CrossmodalSearcher(
        OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM), text_fields=()
    )
    plain.index(products[:6])
    assert plain.store.text_fields == ()  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="no full-text fields"):
        plain.search("red dress", hybrid=True)
    auto = plain.search("red dress", top_k=3)  # None: vectors only, no error
    assert [h.product_id for h in auto] == [
        h.product_id for h in plain.search("red dress", top_k=3, hybrid=False)
    ]
    with pytest.raises(ConfigurationError, match="text_fields"):
        CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM), text_fields="t")


def test_turning_hybrid_on_for_an_indexed_catalog_costs_no_embedding_call(
    tmp_path: Path, products: list[Product]
) -> None:
    store_dir = tmp_path / "store"
    with CrossmodalSearcher(
        OfflineEmbedder(DIM), LocalVectorStore(store_dir, dimension=DIM), text_fields=()
    ) as first:
        assert first.index(products).embed_calls == 76 + 12  # and the bags' extra photos
    fields: list[str | TextField] = [TextField("title"), TextField("model_number"), "brand"]
    with CrossmodalSearcher(
        OfflineEmbedder(DIM), LocalVectorStore(store_dir), text_fields=fields
    ) as second:
        report = second.index(products)
        assert report.embed_calls == 0 and report.skipped_unchanged == len(products)
        number = _model(products, "B0SAMPLE33")
        assert second.search(number, hybrid=True)[0].product_id == "B0SAMPLE33"
    with CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(store_dir)) as reopened:
        keys = [f.key for f in reopened.store.text_fields]  # type: ignore[attr-defined]
        assert keys == ["title", "model_number", "brand"]
        assert reopened.search(number)[0].product_id == "B0SAMPLE33"


def test_hybrid_search_wins_on_exact_terms_and_loses_nothing_on_descriptions(
    searcher: CrossmodalSearcher, root: Path
) -> None:
    """The claim docs/evaluation.md states, on the sample catalog with the offline embedder."""
    queries = read_queries(write_sample_evaluation(root).queries)
    comparison = compare(
        searcher,
        queries,
        k_values=(10,),
        search_modes=(),
        fusions=(),
        text_weights=(),
        dimensions=(),
        lexical_weights=(),
    )
    by = {r.report.settings.hybrid: r.report for r in comparison.results}
    vectors, hybrid = by[False], by[True]

    def ndcg(kind: str, report: object) -> float:
        return report.by_kind[kind].metrics["ndcg@10"]  # type: ignore[attr-defined,no-any-return]

    assert ndcg("model number", hybrid) > ndcg("model number", vectors) + 0.3
    assert ndcg("brand", hybrid) > ndcg("brand", vectors)
    for kind in vectors.by_kind:
        assert ndcg(kind, hybrid) >= ndcg(kind, vectors) - 1e-9, kind
    assert hybrid.metric("ndcg@10") > vectors.metric("ndcg@10")


def test_on_s3_vectors_one_query_call_per_search_part_carries_the_words(
    products: list[Product], root: Path
) -> None:
    from crossmodal_search.stores import S3VectorsStore
    from crossmodal_search.testing import FakeS3Vectors

    fake = FakeS3Vectors()  # a bucket made now: ENHANCED indexes
    store = S3VectorsStore("shop", "products", client=fake.client(), dimension=DIM)
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), store)
    assert not searcher.index(products).failed
    assert [f.key for f in store.text_fields] == ["title", "text", "brand", "model_number"]

    before = fake.calls["query_vectors"]
    hit = searcher.search("RS-2427G", top_k=3)[0]
    assert hit.product_id == "B0SAMPLE21" and hit.matched_by == "both"
    assert fake.calls["query_vectors"] == before + 1
    request = next(r for r in reversed(fake.requests) if r.operation == "query_vectors")
    texts = {t["metadataKey"]: t["text"] for t in request.params["queryTexts"]}
    assert texts == dict.fromkeys(["title", "text", "brand", "model_number"], "RS-2427G")
    assert "queryVector" in request.params

    photo = next(q for q in SAMPLE_QUERIES if q.name == "image").image_path(root)
    before = fake.calls["query_vectors"]
    searcher.search("in green", str(photo), search_mode="image", fusion="rrf", text_weight=0.6)
    assert fake.calls["query_vectors"] == before + 2  # the text part (with words), the photo
