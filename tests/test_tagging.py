"""Zero-shot tagging on the demo catalog: tags, their quality, and filtered search by tag."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crossmodal_search.cli import main
from crossmodal_search.datasets import (
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import Embedder, NovaEmbeddings, OfflineEmbedder
from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.evaluation import (
    evaluate_tags,
    write_sample_evaluation,
)
from crossmodal_search.search import (
    CrossmodalSearcher,
    Product,
    TagVocabulary,
    load_vocabulary,
    tag_products,
)
from crossmodal_search.stores import LocalVectorStore, S3VectorsStore, VectorRecord, VectorStore
from crossmodal_search.testing import FakeBedrock, FakeS3Vectors

DIM = 256


@dataclass
class Demo:
    root: Path
    vocabulary: TagVocabulary
    gold: dict[str, list[str]]

    def gold_colour(self, pid: str) -> str:
        return self.gold[pid][0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = write_sample_catalog(tmp_path_factory.mktemp("demo") / "catalog")
    files = write_sample_evaluation(root)
    gold = json.loads(files.gold_tags.read_text())
    return Demo(root, load_vocabulary(files.vocabulary), gold)


def _store(kind: str) -> VectorStore:
    if kind == "s3":
        return S3VectorsStore(
            "shop-vectors", "products", client=FakeS3Vectors().client(), dimension=DIM
        )
    return LocalVectorStore(dimension=DIM)


@pytest.fixture(scope="module")
def vectors(demo: Demo) -> list[VectorRecord]:
    """The demo catalog indexed once; each test copies the records into a fresh store."""
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), LocalVectorStore(dimension=DIM))
    report = searcher.index(load_abo(demo.root).products)
    assert report.indexed == 38 and not report.failed
    return list(searcher.store.records())


@pytest.fixture(params=["local", "s3"])
def indexed(
    request: pytest.FixtureRequest, vectors: list[VectorRecord]
) -> Iterator[CrossmodalSearcher]:
    store = _store(request.param)
    store.put(vectors)
    with CrossmodalSearcher(OfflineEmbedder(dimension=DIM), store) as searcher:
        yield searcher


def test_colour_tags_are_correct_with_precision_and_recall(indexed, demo):
    report = tag_products(
        indexed.store, indexed.embedder, demo.vocabulary, top1_per_group=True, source="image"
    )
    assert len(report.products) == 38
    assert report.label_embed_calls == sum(len(v) for v in demo.vocabulary.groups.values())
    # The text, image and combined vector of each product, and the bags' extra photos.
    assert report.vectors_updated == 38 * 3 + 6 * 2
    for tags in report.products:
        assert tags.source == "image"
        assert tags.by_group["color"] == [demo.gold_colour(tags.product_id)], tags.product_id
    colour_gold = {pid: [labels[0]] for pid, labels in demo.gold.items()}
    predicted = {p.product_id: p.by_group["color"] for p in report.products}
    quality = evaluate_tags(predicted, colour_gold)
    assert quality.products == 38
    assert {t for t, s in quality.per_tag.items() if s.support} == {
        "red",
        "yellow",
        "green",
        "blue",
        "purple",
        "black",
    }
    for score in quality.per_tag.values():
        assert (score.precision, score.recall) == (1.0, 1.0)
    assert quality.micro_f1 == 1.0


def test_combined_vectors_also_recover_categories(indexed, demo):
    report = tag_products(indexed.store, indexed.embedder, demo.vocabulary, top1_per_group=True)
    assert {p.source for p in report.products} == {"combined"}  # auto prefers combined
    quality = evaluate_tags(report.predicted(), demo.gold)
    assert set(quality.per_tag) >= {"dress", "t-shirt", "mug", "sneakers", "lamp", "bag"}
    for colour in ("red", "yellow", "green", "blue", "purple", "black"):
        assert quality.per_tag[colour].recall == 1.0
    assert all(quality.per_tag[c].support >= 6 for c in ("dress", "mug", "sneakers", "lamp"))
    # The offline embedder only matches category *words* (hashed, so some collide at 256-d)
    # and cannot read the German and Japanese listings: a floor, measured 68/76 at 256-d.
    assert quality.micro_recall >= 0.85


def test_filtered_search_by_tag_returns_only_that_colour(indexed, demo):
    tag_products(indexed.store, indexed.embedder, demo.vocabulary, top1_per_group=True)
    red = {pid for pid, labels in demo.gold.items() if labels[0] == "red"}
    assert len(red) == 7
    for mode in ("combined", "text", "image", "all"):
        results = indexed.search("dress", filter={"tags": "red"}, search_mode=mode, top_k=20)
        assert {r.product_id for r in results} == red, mode
    results = indexed.search("mug", filter={"tag_color": {"$eq": "red"}}, top_k=20)
    assert {r.product_id for r in results} == red
    found = indexed.search("red dress", filter={"tags": {"$in": ["red"]}}, top_k=20)
    top = next(r for r in found if r.product_id == "B0SAMPLE01")  # the red dress
    # catalog metadata survives the rewrite; tags sit next to it
    assert top.metadata["color"] == ["red"]
    assert top.metadata["product_type"] == "DRESS"
    assert "red" in top.metadata["tags"]
    view = indexed.get_product("B0SAMPLE01")
    assert view is not None and view.content_hash


def test_retagging_replaces_previous_tags_and_dry_run_writes_nothing(indexed, demo):
    tag_products(indexed.store, indexed.embedder, demo.vocabulary, top1_per_group=True)
    colours_only = TagVocabulary.from_labels(["red", "blue"])
    dry = tag_products(
        indexed.store, indexed.embedder, colours_only, top1_per_group=True, dry_run=True
    )
    assert dry.vectors_updated == 0
    assert indexed.search("lamp", filter={"tag_category": "lamp"}, top_k=20)  # still there

    report = tag_products(indexed.store, indexed.embedder, colours_only, threshold=0.2)
    assert report.vectors_updated == 38 * 3 + 6 * 2
    assert indexed.search("lamp", filter={"tag_category": "lamp"}, top_k=20) == []
    blue = {r.product_id for r in indexed.search("x", filter={"tags": "blue"}, top_k=50)}
    assert blue == {pid for pid, labels in demo.gold.items() if labels[0] == "blue"}
    # no label clears the threshold for a green product: it gets no tags key at all
    green = indexed.get_product("B0SAMPLE03")
    assert green is not None and "tags" not in green.metadata


def test_tagging_some_products_by_id(indexed, demo):
    ids = ["B0SAMPLE01", "B0SAMPLE04", "not-a-product"]
    report = tag_products(
        indexed.store, indexed.embedder, demo.vocabulary, top1_per_group=True, product_ids=ids
    )
    assert [p.product_id for p in report.products] == ["B0SAMPLE01", "B0SAMPLE04"]
    assert report.vectors_updated == 6
    tagged = {
        r.product_id
        for r in indexed.search("x", filter={"tags": {"$in": ["red", "blue"]}}, top_k=50)
    }
    assert tagged == {"B0SAMPLE01", "B0SAMPLE04"}


def test_labels_are_embedded_with_classification_purpose(demo):
    bedrock = FakeBedrock()
    nova = NovaEmbeddings(client=bedrock.client(), dimension=DIM)
    store = LocalVectorStore(dimension=DIM)
    searcher = CrossmodalSearcher(nova, store)
    products = [p for p in load_abo(demo.root).products if p.product_id <= "B0SAMPLE12"]
    searcher.index(products)
    before = len(bedrock.requests)
    vocab = TagVocabulary.from_labels(
        {"color": ["red", "blue"], "category": {"dress": "a photo of a dress"}},
        template="product photo, colour {label}",
    )
    report = tag_products(store, nova, vocab, top1_per_group=True)
    label_requests = bedrock.requests[before:]
    assert len(label_requests) == 3 == report.label_embed_calls  # labels only, no re-embedding
    params = [r["singleEmbeddingParams"] for r in label_requests]
    assert {p["embeddingPurpose"] for p in params} == {"CLASSIFICATION"}
    assert sorted(p["text"]["value"] for p in params) == [
        "a photo of a dress",
        "product photo, colour blue",
        "product photo, colour red",
    ]
    assert {p["embeddingDimension"] for p in params} == {DIM}
    assert report.predicted()["B0SAMPLE01"][0] == "red"


def test_argument_errors_come_before_any_embedding(demo):
    class Refuse:
        model_id = "refuse"
        dimension = DIM

        def _fail(self, *a: object, **k: object) -> object:
            raise AssertionError("must not embed")

        embed_text = embed_texts = embed_image = embed_images = _fail

    embedder: Embedder = Refuse()  # type: ignore[assignment]
    store = LocalVectorStore(dimension=DIM)
    with pytest.raises(InvalidInputError, match="threshold, top1_per_group"):
        tag_products(store, embedder, demo.vocabulary)
    with pytest.raises(InvalidInputError, match="source must be"):
        tag_products(store, embedder, demo.vocabulary, threshold=0.1, source="audio")  # type: ignore[arg-type]
    blocked = LocalVectorStore(dimension=DIM, non_filterable_metadata_keys=["tags"])
    with pytest.raises(ConfigurationError, match="non-filterable"):
        tag_products(blocked, embedder, demo.vocabulary, threshold=0.1)


@pytest.mark.parametrize(
    ("labels", "template", "message"),
    [
        ([], "a {label}", "no groups|no labels"),
        ({"color": []}, "a {label}", "no labels"),
        (["red", "red"], "a {label}", "duplicate label 'red'"),
        (["red", " "], "a {label}", "empty label"),
        (["red"], "no placeholder", "must contain"),
        ({"bad group!": ["x"]}, "a {label}", "group name"),
        ({"color": "red"}, "a {label}", "must be a list"),
    ],
)
def test_vocabulary_validation(labels, template, message):
    with pytest.raises(InvalidInputError, match=message):
        TagVocabulary.from_labels(labels, template=template)


def test_vocabulary_files_json_and_yaml(tmp_path, monkeypatch):
    (tmp_path / "v.json").write_text('["red", "blue"]')
    plain = load_vocabulary(tmp_path / "v.json")
    assert not plain.grouped and plain.labels() == [("tags", "red"), ("tags", "blue")]
    (tmp_path / "v.yaml").write_text(
        "template: 'a {label} thing'\n"
        "groups:\n  color: [red, blue]\n  style:\n    boho: bohemian style\n"
    )
    grouped = load_vocabulary(tmp_path / "v.yaml")
    assert grouped.grouped
    assert grouped.prompt("color", "red") == "a red thing"
    assert grouped.prompt("style", "boho") == "bohemian style"
    (tmp_path / "bad.json").write_text('{"color": ["red",]}')
    with pytest.raises(InvalidInputError, match=r"bad\.json: invalid JSON at line 1"):
        load_vocabulary(tmp_path / "bad.json")
    (tmp_path / "extra.json").write_text('{"groups": {"c": ["x"]}, "colour": 1}')
    with pytest.raises(InvalidInputError, match="unknown vocabulary keys"):
        load_vocabulary(tmp_path / "extra.json")
    with pytest.raises(InvalidInputError, match="not found"):
        load_vocabulary(tmp_path / "missing.json")
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'crossmodal-search\[yaml\]'"):
        load_vocabulary(tmp_path / "v.yaml")


def test_evaluate_tags_by_hand():
    gold = {"a": ["red", "dress"], "b": ["blue", "dress"], "c": ["red", "mug"]}
    predicted = {"a": ["Red", "dress"], "b": ["red", "dress"], "d": ["red"]}  # c: no tags
    q = evaluate_tags(predicted, gold)
    red = q.per_tag["red"]
    assert (red.true_positives, red.predicted, red.support) == (1, 2, 2)
    assert (red.precision, red.recall) == (0.5, 0.5)
    assert (q.per_tag["dress"].precision, q.per_tag["dress"].recall) == (1.0, 1.0)
    assert (q.per_tag["blue"].precision, q.per_tag["blue"].recall) == (0.0, 0.0)  # never predicted
    assert q.per_tag["mug"].recall == 0.0
    # pooled: 3 correct of 4 predicted, of 6 gold labels
    assert (q.micro_precision, q.micro_recall) == (0.75, 0.5)
    assert q.micro_f1 == pytest.approx(0.6)
    assert q.macro_recall == pytest.approx((0.5 + 1.0 + 0.0 + 0.0) / 4)
    assert q.products == 3  # "d" has no gold labels and is not scored


# ---------------------------------------------------------------------------- CLI


def test_cli_tag_then_filtered_search(tmp_path, demo, vectors, capsys):
    directory = tmp_path / "store"
    with LocalVectorStore(directory, dimension=DIM) as store:
        store.put(vectors)
    opts = ["--store", f"local:{directory}", "--embedder", "offline", "--dimension", str(DIM)]
    vocab = demo.root / "eval" / "tags.json"
    gold = demo.root / "eval" / "gold_tags.json"

    # A dry run only reads: it runs while another process holds the store's write lock.
    with LocalVectorStore(directory):
        assert main(["tag", *opts, "--vocab", str(vocab), "--dry-run", "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert "nothing written (dry run)" in out
    assert "B0SAMPLE36" in out  # --show 0 lists every product

    assert main(["tag", *opts, "--vocab", str(vocab), "--gold", str(gold), "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "tagged 38 products with 16 label embeddings; 126 vectors" in out
    assert "... and 35 more" in out
    red_row = next(line for line in out.splitlines() if line.strip().startswith("red "))
    assert red_row.split()[1:4] == ["1.000", "1.000", "1.000"]
    assert "micro: precision" in out
    assert """--filter '{"tags":""" in out

    search = ["search", *opts, "--filter", '{"tags": "red"}', "--top-k", "20", "--json", "dress"]
    assert main(search) == 0
    found = json.loads(capsys.readouterr().out)["results"]
    red = {pid for pid, labels in demo.gold.items() if labels[0] == "red"}
    assert {r["product_id"] for r in found} == red


def test_cli_tag_json_yaml_threshold_and_errors(tmp_path, vectors, capsys):
    directory = tmp_path / "store"
    with LocalVectorStore(directory, dimension=DIM) as store:
        store.put(vectors)
    opts = ["--store", f"local:{directory}", "--embedder", "offline", "--dimension", str(DIM)]
    (tmp_path / "v.yaml").write_text("- red\n- blue\n")
    args = ["tag", *opts, "--vocab", str(tmp_path / "v.yaml"), "--threshold", "0.2", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    tags = {p["product_id"]: p["tags"] for p in payload["tagging"]["products"]}
    assert tags["B0SAMPLE01"] == ["red"]
    assert tags["B0SAMPLE03"] == []  # green: nothing clears the threshold
    assert payload["quality"] is None

    (tmp_path / "gold.json").write_text('["not", "a", "mapping"]')
    bad = ["tag", *opts, "--vocab", str(tmp_path / "v.yaml"), "--gold", str(tmp_path / "gold.json")]
    assert main(bad) == 1
    assert "expected an object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tag", *opts, "--vocab", str(tmp_path / "v.yaml"), "--threshold", "2"])
    assert main(["tag", *opts, "--vocab", str(tmp_path / "v.yaml"), "--template", "plain"]) == 1
    assert "--template: " in capsys.readouterr().err
    templated = ["tag", *opts, "--vocab", str(tmp_path / "v.yaml"), "--template", "{label}"]
    assert main([*templated, "--json", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)["tagging"]
    assert dry["vectors_updated"] == 0 and dry["label_embed_calls"] == 2
    assert (
        main(["tag", "--vocab", str(tmp_path / "v.yaml"), "--store", f"local:{tmp_path}/no"]) == 1
    )
    assert "no index at" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["brand", "text"])
def test_tags_survive_reindexing_a_changed_product(demo, change):
    products = load_abo(demo.root).products
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), LocalVectorStore(dimension=DIM))
    searcher.index(products)
    tag_products(searcher.store, searcher.embedder, demo.vocabulary, top1_per_group=True)
    before = searcher.get_product("B0SAMPLE01")
    assert before is not None and before.metadata["tag_color"] == ["red"]

    # metadata-only change (rewritten from stored vectors) or a text change (re-embedded)
    def changed(p: Product) -> Product:
        if p.product_id != "B0SAMPLE01":
            return p
        if change == "brand":
            return p.model_copy(update={"metadata": {**p.metadata, "brand": "Other Brand"}})
        return p.model_copy(update={"text": p.text + " (new season)"})

    report = searcher.index([changed(p) for p in products])
    assert report.indexed == 1 and report.skipped_unchanged == 37
    for mode in ("combined", "text", "image"):
        found = searcher.search("dress", filter={"tags": "red"}, search_mode=mode, top_k=20)
        assert "B0SAMPLE01" in {r.product_id for r in found}, mode
    after = searcher.get_product("B0SAMPLE01")
    assert after is not None
    assert after.metadata["tag_color"] == before.metadata["tag_color"]
    if change == "brand":
        assert after.metadata["brand"] == "Other Brand"
    else:
        assert after.text.endswith("(new season)")
    # tags the product sets itself win over the stored ones
    own = [
        p.model_copy(update={"metadata": {**p.metadata, "tags": ["sale"]}})
        if p.product_id == "B0SAMPLE01"
        else p
        for p in products
    ]
    searcher.index(own)
    mine = searcher.get_product("B0SAMPLE01")
    assert mine is not None and mine.metadata["tags"] == ["sale"]
    assert "tag_color" not in mine.metadata
