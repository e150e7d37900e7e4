"""The labelled query file: model, JSON-lines reader/writer, errors naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation import LabelledQuery, read_queries, write_queries


def _write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_list_and_graded_relevance_and_resolves_relative_images(tmp_path):
    file = _write(
        tmp_path / "q.jsonl",
        '{"id": "q1", "text": "red shoe", "relevant": ["A", "B"]}',
        "",
        '{"id": "q2", "image": "img/x.png", "relevant": {"A": 3, "C": 0}, "kind": "held-out"}',
        '{"id": "q3", "text": "in blue", "image": "s3://bucket/k.png", "relevant": {"B": 1}}',
    )
    q1, q2, q3 = read_queries(file)
    assert q1.relevant == {"A": 1.0, "B": 1.0}
    assert q1.query_type == "text"
    assert q2.relevant == {"A": 3.0, "C": 0.0}
    assert q2.image == str(tmp_path / "img" / "x.png")
    assert q2.query_type == "image"
    assert q2.kind == "held-out"
    assert q3.image == "s3://bucket/k.png"
    assert q3.query_type == "text+image"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"id": "q9", "relevant": ["A"]}', "line 2: .*needs 'text', 'image' or both"),
        ('{"id": "q9", "text": "   ", "relevant": ["A"]}', "line 2: .*needs 'text'"),
        ('{"id": "q9", "text": "x", "relevant": {"A": -1}}', "line 2: relevant: .*>= 0"),
        ('{"id": "q9", "text": "x", "relevant": "A"}', "line 2: relevant: must be a list"),
        ('{"id": "q9", "text": "x", "relevant": [], "extra": 1}', "line 2: extra: Extra inputs"),
        ('{"text": "x", "relevant": []}', "line 2: id: Field required"),
        (
            '{"id": "q1", "text": "again", "relevant": []}',
            "line 2: duplicate query id 'q1'.*line 1",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path, line, message):
    file = _write(tmp_path / "bad.jsonl", '{"id": "q1", "text": "ok", "relevant": ["A"]}', line)
    with pytest.raises(InvalidInputError, match=message) as info:
        read_queries(file)
    assert str(file) in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="query file not found"):
        read_queries(tmp_path / "nope.jsonl")


def test_round_trip_keeps_images_relative_to_the_file(tmp_path):
    (tmp_path / "img").mkdir()
    queries = [
        LabelledQuery(id="a", text="red", relevant={"P1": 1}),
        LabelledQuery(id="b", image=str(tmp_path / "img" / "p.png"), relevant={"P2": 2}, kind="k"),
        LabelledQuery(id="c", image="s3://b/p.png", text="t", relevant={}),
        LabelledQuery(id="d", image=str(tmp_path / "img" / "q.png"), relevant={}),
    ]
    out = write_queries(queries, tmp_path / "eval" / "q.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"id": "a", "text": "red", "relevant": {"P1": 1.0}}
    assert rows[1]["image"] == "../img/p.png"
    assert rows[2]["image"] == "s3://b/p.png"
    assert read_queries(out) == queries


def test_write_rejects_duplicate_ids_and_leaves_old_file(tmp_path):
    target = tmp_path / "q.jsonl"
    target.write_text("old\n")
    dup = [LabelledQuery(id="a", text="x"), LabelledQuery(id="a", text="y")]
    with pytest.raises(InvalidInputError, match="duplicate query id 'a'"):
        write_queries(dup, target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["q.jsonl"]


def test_query_is_immutable():
    q = LabelledQuery.model_validate({"id": "a", "text": "x", "relevant": ["A"]})
    assert q.relevant == {"A": 1.0}
    with pytest.raises(ValidationError, match="frozen"):
        q.__setattr__("text", "y")


def test_sample_evaluation_files_for_the_demo_catalog(tmp_path):
    from crossmodal_search.datasets import (
        load_abo,
        write_sample_catalog,
    )
    from crossmodal_search.evaluation import write_sample_evaluation
    from crossmodal_search.search import load_vocabulary

    a = write_sample_evaluation(write_sample_catalog(tmp_path / "a"))
    b = write_sample_evaluation(write_sample_catalog(tmp_path / "b"))
    assert a.queries.read_bytes() == b.queries.read_bytes()  # deterministic, relative paths
    photos = sorted((tmp_path / "a" / "eval" / "photos").iterdir())
    assert len(photos) == 12 + 12  # two per product kind, and one per bag's extra photo
    for p in photos:
        assert p.read_bytes() == (tmp_path / "b" / "eval" / "photos" / p.name).read_bytes()

    products = {p.product_id: p for p in load_abo(tmp_path / "a").products}
    catalog_images = {Path(i).read_bytes() for p in products.values() for i in p.all_images}
    assert not any(p.read_bytes() in catalog_images for p in photos)  # never the indexed file

    queries = read_queries(a.queries)
    assert len(queries) == a.query_count == 112
    assert all(set(q.relevant) <= set(products) for q in queries)
    red_dress = next(q for q in queries if q.id == "text-red-dress")
    assert red_dress.relevant == {"B0SAMPLE01": 1.0}
    red_mug = next(q for q in queries if q.id == "text-red-mug")
    assert set(red_mug.relevant) == {"B0SAMPLE13", "B0SAMPLEDE"}  # the German listing too
    for q in (q for q in queries if q.kind == "photo+colour"):
        photographed = [p for p, g in q.relevant.items() if g == 1.0]
        wanted = [p for p, g in q.relevant.items() if g == 2.0]
        assert len(photographed) == 1 and wanted
        kind = products[photographed[0]].metadata["product_type"]
        assert all(products[p].metadata["product_type"] == kind for p in wanted)
        assert all(products[p].metadata["color"] == [q.text] for p in wanted)

    # Exact terms: each model number finds its one product; brand and size queries name the
    # products that carry the brand or size.
    exact = [q for q in queries if q.kind in ("model number", "brand", "size")]
    assert {q.kind for q in exact} == {"model number", "brand", "size"}
    for q in exact:
        for pid in q.relevant:
            meta, title = products[pid].metadata, products[pid].title or ""
            if q.kind == "model number":
                assert list(q.relevant) == [pid] and meta["model_number"] == q.text
            elif q.kind == "brand":
                assert q.text is not None and q.text.startswith(str(meta["brand"]))
            else:
                assert q.text is not None and " ".join(q.text.split()[:2]) in title
    carryall = next(q for q in exact if q.id == "brand-carryall-bag")
    assert carryall.text == "Carryall bag" and len(carryall.relevant) == 3

    vocab = load_vocabulary(a.vocabulary)
    assert vocab.groups["category"].keys() == {"bag", "dress", "lamp", "mug", "sneakers", "t-shirt"}
    assert {"red", "white"} <= vocab.groups["color"].keys()  # white: a distractor
    gold = json.loads(a.gold_tags.read_text())
    assert len(gold) == 38 and gold["B0SAMPLEJP"] == ["yellow", "sneakers"]
