"""Results a person can trust: similarity, part similarities and score mean one thing in every
mode; titles travel everywhere; an index written by another tool is explained, not empty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search import EmbeddingPurpose
from crossmodal_search.cli import main
from crossmodal_search.datasets import SAMPLE_QUERIES, load_abo, write_sample_catalog
from crossmodal_search.embeddings import OfflineEmbedder
from crossmodal_search.errors import ForeignIndexError
from crossmodal_search.search import CrossmodalSearcher, Product
from crossmodal_search.stores import LocalVectorStore, S3VectorsStore, VectorRecord, VectorStore
from crossmodal_search.testing import FakeS3Vectors

DIM = 256
_, _, BOTH, _ = SAMPLE_QUERIES  # "in green" + the blue-sneaker photo, text weight 0.6


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_catalog(tmp_path_factory.mktemp("sample"))


def _store(kind: str) -> VectorStore:
    if kind == "s3":
        fake = FakeS3Vectors()
        return S3VectorsStore("shop", "products", client=fake.client(), dimension=DIM)
    return LocalVectorStore(dimension=DIM)


@pytest.fixture(scope="module", params=["local", "s3"])
def searcher(request: pytest.FixtureRequest, root: Path) -> CrossmodalSearcher:
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), _store(request.param))
    assert not searcher.index(load_abo(root).products).failed
    return searcher


def _unit(v: Any) -> np.ndarray:
    w = np.asarray(v, dtype=np.float64)
    out: np.ndarray = w / np.linalg.norm(w)
    return out


@pytest.mark.parametrize("hybrid", [False, None], ids=["vectors", "hybrid"])
@pytest.mark.parametrize("fusion", ["mean", "rrf"])
@pytest.mark.parametrize("parts", ["text", "image", "text+photo"])
def test_similarity_is_to_the_whole_query_and_parts_to_each_part(
    searcher: CrossmodalSearcher, root: Path, fusion: str, parts: str, hybrid: bool | None
) -> None:
    text = BOTH.text if parts != "image" else None
    image = str(BOTH.image_path(root)) if parts != "text" else None
    hits = searcher.search(
        text,
        image,
        top_k=10,
        fusion=fusion,  # type: ignore[arg-type]
        text_weight=0.6,
        hybrid=hybrid,
    )
    assert hits

    # The query, computed here from the embedder alone (combined vectors: GENERIC_RETRIEVAL).
    purpose = EmbeddingPurpose.GENERIC_RETRIEVAL
    embedder = searcher.embedder
    vectors: dict[str, np.ndarray] = {}
    if text is not None:
        vectors["text"] = _unit(embedder.embed_text(text, purpose=purpose))
    if image is not None:
        vectors["image"] = _unit(embedder.embed_image(image, purpose=purpose))
    if len(vectors) == 2:
        whole = _unit(0.6 * vectors["text"] + 0.4 * vectors["image"])
    else:
        (whole,) = vectors.values()

    stored = {r.key: _unit(r.vector) for r in searcher.store.get([h.key for h in hits]).records}
    for hit in hits:
        v = stored[hit.key]
        assert hit.similarity == pytest.approx(float(v @ whole), abs=1e-5)
        assert hit.distance == pytest.approx(1.0 - hit.similarity, abs=1e-5)
        assert set(hit.part_similarities) == set(vectors)
        for name, q in vectors.items():
            assert hit.part_similarities[name] == pytest.approx(float(v @ q), abs=1e-5)  # type: ignore[index]
        words_ranked = hybrid is None and text is not None
        if (fusion == "mean" or len(vectors) == 1) and not words_ranked:
            assert hit.score == hit.similarity
        if words_ranked and fusion == "mean":  # relative score fusion: in [0, 1]
            assert 0.0 <= hit.score <= 1.0
            assert hit.matched_by in ("vector", "words", "both")
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)  # the score is what ranked them


def test_rrf_bars_no_longer_contradict_the_order(searcher: CrossmodalSearcher, root: Path) -> None:
    """The case the issue reports: under rrf every similarity was one part's, 0.027 at rank 1."""
    hits = searcher.search(
        BOTH.text, str(BOTH.image_path(root)), fusion="rrf", text_weight=0.6, top_k=10
    )
    assert all(0.0 < h.similarity <= 1.0 for h in hits)
    assert all(h.score < 0.1 for h in hits)  # a reciprocal-rank score, not a similarity
    mean = searcher.search(BOTH.text, str(BOTH.image_path(root)), text_weight=0.6, top_k=10)
    # One product found both ways has one similarity, whatever the fusion.
    common = {h.product_id: h for h in hits} & {h.product_id: h for h in mean}.keys()
    for pid in common:
        a = next(h for h in hits if h.product_id == pid)
        b = next(h for h in mean if h.product_id == pid)
        if a.key == b.key:
            assert a.similarity == pytest.approx(b.similarity, abs=1e-5)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_titles_round_trip_through_stores_results_and_views(kind: str) -> None:
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), _store(kind))
    products = [
        Product("p1", "Light cotton, sleeveless", title="Red summer dress"),
        Product("p2", "Blue ceramic mug\nHolds 15 oz"),  # no title: the first line shows
    ]
    searcher.index(products)
    hits = {h.product_id: h for h in searcher.search("red cotton dress", top_k=2)}
    assert hits["p1"].title == "Red summer dress" and hits["p1"].text == "Light cotton, sleeveless"
    assert hits["p2"].title == "Blue ceramic mug"
    view = searcher.get_product("p1")
    assert view is not None and view.title == "Red summer dress"
    # The title is filterable metadata.
    found = searcher.search("dress", filter={"title": "Red summer dress"}, top_k=5)
    assert [h.product_id for h in found] == ["p1"]
    # An index from before titles: adding none changes nothing; adding one is metadata only.
    again = searcher.index(products)
    assert (again.skipped_unchanged, again.embed_calls) == (2, 0)


def test_title_in_the_cli_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"product_id": "p1", "title": "Red summer dress", "text": "Light cotton, sleeveless"},
        {"product_id": "p2", "text": "Blue ceramic mug"},
    ]
    catalog = tmp_path / "products.jsonl"
    catalog.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    store = ["--store", f"local:{tmp_path / 's'}", "--embedder", "offline", "--dimension", "256"]
    assert main(["index", str(catalog), *store]) == 0
    capsys.readouterr()
    assert main(["search", "red dress", *store, "--top-k", "1"]) == 0
    assert "Red summer dress" in capsys.readouterr().out
    assert main(["search", "red dress", *store, "--top-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert hit["title"] == "Red summer dress"
    assert set(hit) >= {"similarity", "score", "part_similarities", "distance"}


# ---------------------------------------------------------------- foreign indexes


def _foreign_index(fake: FakeS3Vectors) -> S3VectorsStore:
    """An index as the official S3 Vectors CLI (s3vectors-embed-cli) writes one: UUID keys and
    its own metadata keys."""
    store = S3VectorsStore("docs", "embed-cli", client=fake.client(), dimension=DIM)
    rng = np.random.default_rng(0)
    store.put(
        [
            VectorRecord.create(
                f"5f1c2a7e-0000-4000-8000-{i:012d}",
                rng.normal(size=DIM),
                {
                    "S3VECTORS-EMBED-SRC-CONTENT": f"document number {i}",
                    "S3VECTORS-EMBED-SRC-LOCATION": f"s3://docs/doc-{i}.txt",
                },
            )
            for i in range(20)
        ]
    )
    return store


def test_a_foreign_index_is_explained_not_empty() -> None:
    store = _foreign_index(FakeS3Vectors())
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), store)
    with pytest.raises(ForeignIndexError, match="none written by crossmodal-search") as info:
        searcher.search("document")
    error = info.value
    assert "S3VECTORS-EMBED-SRC-CONTENT" in error.metadata_keys
    assert error.sample_keys[0].startswith("5f1c2a7e-")
    assert "crossmodal search --raw" in str(error) and "store.query" in str(error)


def test_raw_search_answers_on_a_foreign_index(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    fake = FakeS3Vectors()
    _foreign_index(fake)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", fake.session())
    argv = ["search", "document", "--store", "s3vectors://docs/embed-cli", "--embedder"]
    argv += ["offline", "--dimension", "256", "--region", "us-east-1"]
    assert main(argv) == 1
    assert "crossmodal search --raw" in capsys.readouterr().err
    assert main([*argv, "--raw", "--top-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if "5f1c2a7e-" in line]
    assert len(rows) == 3 and "S3VECTORS-EMBED-SRC-LOCATION" in rows[0]
    assert main([*argv, "--raw", "--top-k", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["results"]
    assert [set(r) for r in found] == [{"key", "distance", "metadata"}] * 2
