"""LocalVectorStore's full-text side: text fields kept with the store, indexes kept in step with
writes, readers, recovery. (Rankings against an independent BM25 and RRF are checked on every
store by tests/test_text_contract.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from crossmodal_search.errors import (
    ConfigurationError,
    IndexMismatchError,
    InvalidFilterError,
    InvalidInputError,
)
from crossmodal_search.stores import (
    LocalVectorStore,
    TextField,
    TextSearchStore,
    VectorRecord,
    recover_local_store,
)

DOCS = {
    "a": ("Sony WH-1000XM5 wireless headphones", [1.0, 0.0, 0.0]),
    "b": ("Bose QuietComfort headphones", [0.0, 1.0, 0.0]),
    "c": ("Carryall tote bag, red", [0.0, 0.0, 1.0]),
    "d": ("Summer dress, red linen", [0.6, 0.8, 0.0]),
}


def fill(store: LocalVectorStore) -> None:
    store.put(
        [
            VectorRecord.create(k, v, {"title": t, "sku": f"SKU-{k.upper()}", "n": i})
            for i, (k, (t, v)) in enumerate(DOCS.items())
        ]
    )


def keys(matches: list) -> list[str]:  # type: ignore[type-arg]
    return [m.key for m in matches]


def test_the_local_store_is_a_text_search_store_in_enhanced_mode() -> None:
    store = LocalVectorStore(dimension=3, text_fields=[TextField("title")])
    assert isinstance(store, TextSearchStore)
    assert store.index_mode == "ENHANCED"
    assert store.text_fields == (TextField("title"),)
    fill(store)
    assert keys(store.query_text({"title": "wh-1000xm5"})) == ["a"]
    assert keys(store.query_text({"title": "RED"})) == ["c", "d"]  # a tie: by key
    assert store.query_text({"title": "nothing matches"}) == []


def test_exact_terms_rank_first_and_scores_say_what_matched() -> None:
    store = LocalVectorStore(dimension=3, text_fields=[TextField("title")])
    fill(store)
    text_only = store.query_text({"title": "headphones"})
    assert set(keys(text_only)) == {"a", "b"}
    assert all(m.fused is None and m.distance is None for m in text_only)
    assert all(m.score == pytest.approx(m.bm25["title"]) for m in text_only)
    # b's title is shorter, so the same single occurrence scores higher (BM25 length norm).
    assert keys(text_only) == ["b", "a"]
    hybrid = store.query_text({"title": "headphones"}, vector=[1.0, 0.0, 0.0], top_k=4)
    assert keys(hybrid)[0] == "a"  # first by words' rank 2 and the vector's rank 1
    by_key = {m.key: m for m in hybrid}
    assert by_key["a"].fused == pytest.approx(1 / 62 + 1 / 61)
    assert by_key["a"].distance == pytest.approx(0.0, abs=1e-6)
    assert by_key["c"].bm25 == {}  # came through the vector ranking only
    assert by_key["c"].distance is not None


def test_filters_apply_before_ranking() -> None:
    store = LocalVectorStore(dimension=3, text_fields=[TextField("title")])
    fill(store)
    assert keys(store.query_text({"title": "red headphones"}, filter={"n": {"$gte": 2}})) == [
        "c",
        "d",
    ]
    prefixed = store.query_text({"title": "red"}, filter={"sku": {"$startsWith": "SKU-D"}})
    assert keys(prefixed) == ["d"]
    with pytest.raises(InvalidFilterError):
        store.query_text({"title": "red"}, filter={"sku": {"$regex": "x"}})


def test_bad_requests_fail_before_anything_and_name_the_problem() -> None:
    store = LocalVectorStore(dimension=3, text_fields=[TextField("title")])
    fill(store)
    for texts, message in [
        ({}, "at least one"),
        ({"title": ""}, "non-empty"),
        ({"brand": "sony"}, "not full-text searchable"),
        ({"title": "x" * 1025}, "1024"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            store.query_text(texts)
    with pytest.raises(InvalidInputError, match="top_k"):
        store.query_text({"title": "red"}, top_k=0)
    with pytest.raises(InvalidInputError):
        store.query_text({"title": "red"}, vector=[math.nan, 0, 0])
    with pytest.raises(InvalidInputError, match="has a text search configuration"):
        store.add_text_fields([TextField("title")])
    with pytest.raises(InvalidInputError, match="not full-text searchable"):
        store.remove_text_fields(["sku"])
    with pytest.raises(InvalidInputError, match="language"):
        LocalVectorStore(dimension=3, text_fields=[TextField("t", language="xx")])  # type: ignore[arg-type]
    assert store.text_fields == (TextField("title"),)


def test_writes_keep_the_index_in_step_and_fields_added_later_index_what_is_stored() -> None:
    store = LocalVectorStore(dimension=3, text_fields=[TextField("title")])
    fill(store)
    assert keys(store.query_text({"title": "carryall"})) == ["c"]  # index built now
    store.put([VectorRecord.create("c", [0, 0, 1], {"title": "plain mug"})])  # upsert
    store.delete(["a"])
    assert store.query_text({"title": "carryall"}) == []
    assert keys(store.query_text({"title": "mug"})) == ["c"]
    assert keys(store.query_text({"title": "headphones"})) == ["b"]
    store.add_text_fields([TextField("sku")])
    assert keys(store.query_text({"sku": "d"})) == ["d"]
    both = store.query_text({"title": "dress", "sku": "b"})
    assert set(keys(both)) == {"b", "d"}
    store.remove_text_fields(["title"])
    with pytest.raises(InvalidInputError, match="not full-text searchable"):
        store.query_text({"title": "dress"})
    assert store.get(["d"]).records[0].metadata["title"] == "Summer dress, red linen"


def test_text_fields_persist_and_reopening_adds_missing_ones(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=3, text_fields=[TextField("title")]) as store:
        fill(store)
    with LocalVectorStore(tmp_path) as store:
        assert store.text_fields == (TextField("title"),)
        assert keys(store.query_text({"title": "carryall"})) == ["c"]
    with LocalVectorStore(tmp_path, text_fields=[TextField("sku")]) as store:
        assert [f.key for f in store.text_fields] == ["title", "sku"]
    with LocalVectorStore(tmp_path) as store:
        assert keys(store.query_text({"sku": "a"})) == ["a"]
        store.remove_text_fields(["sku"])
    with LocalVectorStore(tmp_path) as store:
        assert store.text_fields == (TextField("title"),)


def test_a_language_change_is_refused_on_reopen(tmp_path: Path) -> None:
    LocalVectorStore(tmp_path, dimension=3, text_fields=[TextField("title")]).close()
    with pytest.raises(IndexMismatchError, match="remove_text_fields then add_text_fields"):
        LocalVectorStore(tmp_path, text_fields=[TextField("title", language="en")])


def test_readers_follow_the_writer_s_fields_and_writes(tmp_path: Path) -> None:
    writer = LocalVectorStore(tmp_path, dimension=3, text_fields=[TextField("title")])
    fill(writer)
    reader = LocalVectorStore(tmp_path, read_only=True)
    assert keys(reader.query_text({"title": "carryall"})) == ["c"]
    writer.add_text_fields([TextField("sku")])
    writer.put([VectorRecord.create("e", [1, 1, 0], {"title": "carryall backpack"})])
    assert set(keys(reader.query_text({"title": "carryall"}))) == {"c", "e"}
    assert keys(reader.query_text({"sku": "b"})) == ["b"]
    with pytest.raises(ConfigurationError, match="read_only"):
        reader.add_text_fields([TextField("n")])
    with pytest.raises(IndexMismatchError, match="open it for writing"):
        LocalVectorStore(tmp_path, read_only=True, text_fields=[TextField("other")])
    reader.close()
    writer.close()


def test_english_analysis_stems_and_drops_stop_words() -> None:
    pytest.importorskip("Stemmer", reason="the 'en' analyzer needs the fulltext extra")
    store = LocalVectorStore(dimension=3, text_fields=[TextField("title", language="en")])
    fill(store)
    assert keys(store.query_text({"title": "dresses"})) == ["d"]
    assert store.query_text({"title": "the and of"}) == []


def test_recovery_keeps_the_text_fields(tmp_path: Path) -> None:
    with LocalVectorStore(tmp_path, dimension=3, text_fields=[TextField("title")]) as store:
        fill(store)
    (tmp_path / "manifest.json").unlink()
    recover_local_store(tmp_path)
    with LocalVectorStore(tmp_path) as store:
        assert store.text_fields == (TextField("title"),)
        assert keys(store.query_text({"title": "carryall"})) == ["c"]


def test_list_values_are_searchable_and_other_values_are_not_text() -> None:
    store = LocalVectorStore(dimension=2, text_fields=[TextField("tags")])
    store.put(
        [
            VectorRecord.create("a", [1, 0], {"tags": ["red", "linen"]}),
            VectorRecord.create("b", [0, 1], {"tags": 42}),
            VectorRecord.create("c", [1, 1], {}),
        ]
    )
    assert keys(store.query_text({"tags": "linen 42"})) == ["a"]
    hybrid = store.query_text({"tags": "linen"}, vector=np.array([0.0, 1.0]), top_k=3)
    assert set(keys(hybrid)) == {"a", "b", "c"}
