"""Variant groups: one hit per product family, top_k counting families, bad groups refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossmodal_search.datasets import load_abo, write_sample_catalog
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search import CrossmodalSearcher, Product, load_products
from crossmodal_search.testing import FakeBedrock
from tests.store_helpers import fake_store

DIM = 256
PACER = "Pacer/AirMesh Runner"
STRIDE = "Stride Lab/AirMesh Runner"


def _searcher(kind: str, bedrock: FakeBedrock) -> CrossmodalSearcher:
    embedder = NovaEmbeddings(client=bedrock.client(), dimension=DIM)
    return CrossmodalSearcher(embedder, fake_store(kind, DIM))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_catalog(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module", params=["local", "s3"])
def sample(request: pytest.FixtureRequest, root: Path) -> tuple[CrossmodalSearcher, FakeBedrock]:
    bedrock = FakeBedrock()
    searcher = _searcher(request.param, bedrock)
    products = load_abo(root, variants_from="model_name").products
    assert not searcher.index(products).failed
    return searcher, bedrock


def test_the_sample_has_two_colour_families_only_when_asked(root: Path) -> None:
    grouped = load_abo(root, variants_from="model_name").products
    families: dict[str, list[str]] = {}
    for p in grouped:
        if p.variant_group is not None:
            families.setdefault(p.variant_group, []).append(p.product_id)
    assert families == {
        PACER: ["B0SAMPLE19", "B0SAMPLE21", "B0SAMPLE23"],
        STRIDE: ["B0SAMPLE20", "B0SAMPLE22", "B0SAMPLE24"],
    }
    assert all(p.variant_group is None for p in load_abo(root).products)
    by_number = load_abo(root, variants_from="model_number").products
    # Every sample listing has its own model number: groups of one.
    groups = [p.variant_group for p in by_number if p.variant_group is not None]
    assert len(groups) == len(set(groups)) == 36 and "Pacer/RS-2421R" in groups
    with pytest.raises(InvalidInputError, match="variants_from must be one of"):
        load_abo(root, variants_from="colour")  # type: ignore[arg-type]


def test_collapse_returns_one_hit_per_family_with_the_other_members(
    sample: tuple[CrossmodalSearcher, FakeBedrock],
) -> None:
    searcher, _ = sample
    flat = searcher.search("running sneakers", top_k=6, hybrid=False)
    assert {h.product_id for h in flat} == {f"B0SAMPLE{i}" for i in range(19, 25)}
    assert all(h.variants == () for h in flat)
    hits = searcher.search("running sneakers", top_k=4, hybrid=False, collapse="variant")
    assert len(hits) == 4
    groups = [h.variant_group for h in hits]
    assert groups[:2] == [flat[0].variant_group, next(g for g in groups if g != groups[0])]
    assert set(groups[:2]) == {PACER, STRIDE} and groups[2:] == [None, None]
    for hit in hits[:2]:
        family = [h for h in flat if h.variant_group == hit.variant_group]
        # The group's best member leads; the others follow, best first, with their numbers.
        assert hit.product_id == family[0].product_id
        assert [v.product_id for v in hit.variants] == [h.product_id for h in family[1:]]
        assert [v.similarity for v in hit.variants] == pytest.approx(
            [h.similarity for h in family[1:]]
        )
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # A filter applies before collapsing: only the green member of its family is left.
    green = searcher.search(
        "running sneakers", top_k=3, hybrid=False, collapse="variant", filter={"color": "green"}
    )
    assert green[0].product_id == "B0SAMPLE21" and green[0].variants == ()
    # The group key is filterable metadata like any other.
    only = searcher.search("sneakers", top_k=10, filter={"variant_group": STRIDE})
    assert sorted(h.product_id for h in only) == ["B0SAMPLE20", "B0SAMPLE22", "B0SAMPLE24"]
    assert all("variant_group" not in h.metadata for h in only)
    assert searcher.get_product("B0SAMPLE22").variant_group == STRIDE  # type: ignore[union-attr]


def test_similar_with_collapse_leaves_the_whole_family_out_without_embedding(
    sample: tuple[CrossmodalSearcher, FakeBedrock],
) -> None:
    searcher, bedrock = sample
    calls = bedrock.calls
    flat = searcher.similar("B0SAMPLE21", top_k=40)
    collapsed = searcher.similar("B0SAMPLE21", top_k=30, collapse="variant")
    assert bedrock.calls == calls
    assert {"B0SAMPLE19", "B0SAMPLE23"} <= {h.product_id for h in flat}  # its own colours
    seen = {h.product_id for h in collapsed} | {v.product_id for h in collapsed for v in h.variants}
    assert not seen & {"B0SAMPLE19", "B0SAMPLE21", "B0SAMPLE23"}
    stride = [h for h in collapsed if h.variant_group == STRIDE]
    assert len(stride) == 1 and len(stride[0].variants) == 2
    groups = [h.variant_group or h.product_id for h in collapsed]
    assert len(groups) == len(set(groups)) == 30
    # Filters and modes as in search: only shoes, each ranked by its image vector.
    shoes = searcher.similar(
        "B0SAMPLE21",
        top_k=5,
        search_mode="image",
        filter={"product_type": "SHOES"},
        collapse="variant",
    )
    assert shoes and all(h.metadata["product_type"] == "SHOES" for h in shoes)
    assert all(h.matched_type == "image" for h in shoes)
    assert "B0SAMPLE21" not in {h.product_id for h in shoes}
    assert bedrock.calls == calls


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_top_k_counts_groups_when_one_family_fills_the_stores_cap(kind: str) -> None:
    # 130 kettles of one family outrank everything: the first 100 products hold one group, so
    # the search asks again without it until three groups are known.
    products = [
        Product(f"K{i:03d}", f"steel kettle {i}", variant_group="kettle") for i in range(130)
    ]
    products += [Product(f"P{i}", f"steel kettle pot {i}", variant_group="pot") for i in range(3)]
    products += [Product("L1", "steel kettle lid"), Product("M1", "copper mug")]
    bedrock = FakeBedrock()
    searcher = CrossmodalSearcher(
        NovaEmbeddings(client=bedrock.client(), dimension=DIM),
        fake_store(kind, DIM),
        text_fields=(),
    )
    assert not searcher.index(products).failed
    query = searcher.embedder.embed_text("steel kettle", purpose="GENERIC_RETRIEVAL")
    query = np.asarray(query, dtype=np.float64) / np.linalg.norm(query)
    stored = searcher.store.get([f"combined-{p.product_id}" for p in products]).records
    sims = {
        str(r.metadata["product_id"]): float(np.asarray(r.vector, np.float64) @ query)
        / float(np.linalg.norm(r.vector))
        for r in stored
    }
    order = sorted(sims, key=lambda pid: -sims[pid])
    group = {p.product_id: p.variant_group or p.product_id for p in products}
    assert {group[pid] for pid in order[:100]} == {"kettle"}  # the premises of the test
    expected: list[str] = []
    for pid in order:
        if group[pid] not in expected:
            expected.append(group[pid])
    assert "pot" in expected[:3]

    calls = bedrock.calls
    hits = searcher.search("steel kettle", top_k=3, collapse="variant")
    assert bedrock.calls == calls + 1  # the query is embedded once, however many rankings
    assert [h.variant_group or h.product_id for h in hits] == expected[:3]
    for hit in hits:  # each group's best member (members a rounding apart may swap)
        best = max(sims[pid] for pid in sims if group[pid] == group[hit.product_id])
        assert hit.similarity == pytest.approx(best, abs=1e-6)
    kettle = hits[0]
    assert len(kettle.variants) == 99  # the members within the store's first 100
    assert all(group[v.product_id] == "kettle" for v in kettle.variants)
    pot = [h for h in hits if h.variant_group == "pot"]
    assert len(pot) == 1 and len(pot[0].variants) == 2


def test_bad_variant_groups_are_refused_before_any_call(tmp_path: Path) -> None:
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(InvalidInputError, match="variant_group"):
            Product("p1", "red mug", variant_group=bad)
    with pytest.raises(InvalidInputError, match="variant_group"):
        Product("p1", "red mug", variant_group=7)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="reserved"):
        Product("p1", "red mug", metadata={"variant_group": "mugs"})
    catalog = tmp_path / "catalog.jsonl"
    lines = [
        {"product_id": "p1", "text": "red mug", "variant_group": "mug"},
        {"product_id": "p2", "text": "blue mug", "variant_group": ""},
    ]
    catalog.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(InvalidInputError, match=r"catalog.jsonl:2: variant_group"):
        load_products(catalog)
    # A group naming a product id is just a name: the family of that product.
    assert Product("p1", "red mug", variant_group="p1").variant_group == "p1"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_bad_collapse_is_refused_before_any_call(kind: str) -> None:
    bedrock = FakeBedrock()
    searcher = _searcher(kind, bedrock)
    searcher.index([Product("p1", "red mug", variant_group="mug")])
    calls = bedrock.calls
    with pytest.raises(InvalidInputError, match="collapse must be one of product, variant"):
        searcher.search("mug", collapse="family")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="collapse"):
        searcher.similar("p1", collapse=None)  # type: ignore[arg-type]
    assert bedrock.calls == calls


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_group_is_metadata_only_rewritten_and_ungrouped_products_keep_their_hash(
    kind: str,
) -> None:
    bedrock = FakeBedrock()
    searcher = _searcher(kind, bedrock)
    plain = [Product("p1", "red mug"), Product("p2", "blue mug")]
    searcher.index(plain)
    before = {r.key: r.metadata["metadata_hash"] for r in searcher.store.get(["text-p1"]).records}
    calls = bedrock.calls
    again = searcher.index(plain)
    assert again.skipped_unchanged == 2 and bedrock.calls == calls
    grouped = [Product(p.product_id, p.text, variant_group="mugs") for p in plain]
    report = searcher.index(grouped)
    assert report.indexed == 2 and report.embed_calls == 0 and bedrock.calls == calls
    stored = searcher.store.get(["text-p1", "combined-p1"]).records
    assert all(r.metadata["variant_group"] == "mugs" for r in stored)
    assert before["text-p1"] != stored[0].metadata["metadata_hash"]
    hits = searcher.search("red mug", top_k=2, collapse="variant", hybrid=False)
    assert [h.product_id for h in hits] == ["p1"]
    assert [v.product_id for v in hits[0].variants] == ["p2"]
    assert hits[0].variants[0].similarity < hits[0].similarity
