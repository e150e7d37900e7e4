"""copy_store and ``crossmodal copy``: an index moves between stores without re-embedding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from moto import mock_aws

from crossmodal_search.cli import main
from crossmodal_search.errors import (
    DimensionMismatchError,
    IndexMismatchError,
    InvalidInputError,
    MetadataLimitError,
)
from crossmodal_search.stores import (
    CopyReport,
    LocalVectorStore,
    S3VectorsStore,
    VectorRecord,
    VectorStore,
    copy_store,
)


def catalog(n: int, dim: int = 8, seed: int = 0) -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    return [
        VectorRecord.create(
            f"p{i:04d}#text", rng.normal(size=dim), {"product_id": f"p{i:04d}", "price": i}
        )
        for i in range(n)
    ]


def snapshot(store: VectorStore) -> dict[str, tuple[list[float], dict[str, Any]]]:
    return {r.key: (np.asarray(r.vector).tolist(), dict(r.metadata)) for r in store.records()}


@pytest.fixture
def s3(fake_credentials: None) -> Iterator[Any]:
    import boto3

    with mock_aws():
        yield boto3.client("s3vectors", region_name="us-east-1")


def test_a_copy_holds_the_same_records_and_a_rerun_writes_nothing() -> None:
    source = LocalVectorStore(dimension=8)
    source.put(catalog(1234))
    target = LocalVectorStore(dimension=8)
    seen: list[CopyReport] = []

    report = copy_store(source, target, batch_size=500, progress=seen.append)

    assert report == CopyReport(read=1234, written=1234, unchanged=0, deleted=0)
    assert snapshot(target) == snapshot(source)
    assert [r.read for r in seen] == [500, 1000, 1234]
    assert copy_store(source, target) == CopyReport(read=1234, written=0, unchanged=1234)


def test_a_rerun_writes_only_what_changed_and_prune_mirrors_the_source() -> None:
    source = LocalVectorStore(dimension=8)
    source.put(catalog(300))
    target = LocalVectorStore(dimension=8)
    target.put(catalog(310, seed=0)[295:])  # 5 shared keys (same data) and 10 the source lacks
    copy_store(source, target)
    changed = catalog(3, seed=1)  # new vectors for p0000..p0002
    source.put(changed[:2])
    source.put([VectorRecord.create("p0002#text", changed[2].vector * 0 + 1, {"price": -1})])

    report = copy_store(source, target, prune=True)

    assert report == CopyReport(read=300, written=3, unchanged=297, deleted=10)
    assert snapshot(target) == snapshot(source)


def test_an_interrupted_copy_resumes_where_it_stopped() -> None:
    source = LocalVectorStore(dimension=8)
    source.put(catalog(1000))
    target = LocalVectorStore(dimension=8)

    class Stop(Exception):
        pass

    def stop_after_two(report: CopyReport) -> None:
        if report.read >= 400:
            raise Stop

    with pytest.raises(Stop):
        copy_store(source, target, batch_size=200, progress=stop_after_two)
    assert len(target) == 400  # whole batches only

    report = copy_store(source, target, batch_size=200)
    assert (report.written, report.unchanged) == (600, 400)
    assert snapshot(target) == snapshot(source)


def test_mismatched_stores_are_refused_before_anything_is_written() -> None:
    source = LocalVectorStore(dimension=8)
    source.put(catalog(10))
    smaller = LocalVectorStore(dimension=4)
    with pytest.raises(DimensionMismatchError, match="copy_truncated"):
        copy_store(source, smaller)
    euclidean = LocalVectorStore(dimension=8, distance_metric="euclidean")
    with pytest.raises(IndexMismatchError, match="distance_metric='cosine'"):
        copy_store(source, euclidean)
    for bad in (0, 10_001, 2.5, True):
        with pytest.raises(InvalidInputError, match="batch_size"):
            copy_store(source, LocalVectorStore(dimension=8), batch_size=bad)  # type: ignore[arg-type]
    assert len(smaller) == 0 and len(euclidean) == 0


def test_a_record_the_target_refuses_stops_the_copy_with_its_batch_unwritten() -> None:
    # "description" is non-filterable in the source (stored, not limited to 2 KB) but the target
    # was created without that exemption: the S3 Vectors limit applies there.
    source = LocalVectorStore(dimension=8, non_filterable_metadata_keys={"description"})
    records = catalog(40)
    long = VectorRecord.create("p9999#text", records[0].vector, {"description": "x" * 3000})
    source.put([*records, long])
    target = LocalVectorStore(dimension=8, non_filterable_metadata_keys=())
    with pytest.raises(MetadataLimitError, match="p9999#text"):
        copy_store(source, target, batch_size=20)
    assert len(target) in (0, 20, 40)  # whole batches before the failing one, none of it
    assert "p9999#text" not in set(target.keys())


def test_a_float16_target_counts_its_own_rounding_as_unchanged() -> None:
    source = LocalVectorStore(dimension=64)
    source.put(catalog(50, dim=64))
    target = LocalVectorStore(dimension=64, storage_dtype="float16")
    copy_store(source, target)
    assert copy_store(source, target).written == 0
    bumped = catalog(1, dim=64)[0]
    source.put([VectorRecord.create(bumped.key, np.asarray(bumped.vector) * 1.01, bumped.metadata)])
    assert copy_store(source, target).written == 1


def test_local_to_s3_vectors_and_back_without_loss(s3: Any, tmp_path: Path) -> None:
    records = [
        VectorRecord.create(r.key, r.vector, {**r.metadata, "tags": ["a", "b"], "on_sale": True})
        for r in catalog(700)
    ]
    local = LocalVectorStore(tmp_path / "dev", dimension=8)
    local.put(records)
    remote = S3VectorsStore("shop-vectors", "products", client=s3, dimension=8)

    assert copy_store(local, remote).written == 700
    assert copy_store(local, remote).unchanged == 700  # compared through GetVectors

    back = LocalVectorStore(dimension=8)
    copy_store(remote, back)
    assert snapshot(back) == snapshot(local)


def test_the_copy_command_creates_the_target_like_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalVectorStore(
        tmp_path / "a",
        dimension=8,
        distance_metric="euclidean",
        non_filterable_metadata_keys={"notes"},
    ) as source:
        source.put(catalog(120))
        want = snapshot(source)

    assert main(["copy", f"local:{tmp_path / 'a'}", f"local:{tmp_path / 'b'}"]) == 0
    assert "120 records read, 120 written, 0 already there unchanged" in capsys.readouterr().out
    with LocalVectorStore(tmp_path / "b", read_only=True) as copied:
        assert copied.distance_metric == "euclidean"
        assert copied.non_filterable_metadata_keys == frozenset({"notes"})
        assert snapshot(copied) == want

    with LocalVectorStore(tmp_path / "a") as source:
        source.delete(["p0000#text"])
    assert main(["copy", f"local:{tmp_path / 'a'}", f"local:{tmp_path / 'b'}", "--prune"]) == 0
    assert "119 records read, 0 written, 119 already there unchanged, 1 deleted" in (
        capsys.readouterr().out
    )


def test_the_copy_command_reports_bad_stores_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["copy", f"local:{tmp_path / 'missing'}", f"local:{tmp_path / 'b'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("crossmodal: error: ") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
    assert main(["copy", "memory:", f"local:{tmp_path / 'b'}"]) == 1
    assert "not memory:" in capsys.readouterr().err
    with LocalVectorStore(tmp_path / "a", dimension=8) as store:
        store.put(catalog(3))
    with LocalVectorStore(tmp_path / "c", dimension=4):
        pass
    assert main(["copy", f"local:{tmp_path / 'a'}", f"local:{tmp_path / 'c'}"]) == 1
    assert "dimension" in capsys.readouterr().err


def _texts(n: int) -> list[VectorRecord]:
    words = ["carryall tote", "wh-1000xm5 headphones", "summer dress", "ceramic mug"]
    return [
        VectorRecord.create(r.key, r.vector, {**r.metadata, "title": words[i % len(words)]})
        for i, r in enumerate(catalog(n))
    ]


def test_full_text_fields_travel_with_the_copy_to_s3_vectors_and_back() -> None:
    from crossmodal_search.stores import TextField
    from crossmodal_search.testing import FakeS3Vectors

    local = LocalVectorStore(dimension=8, text_fields=[TextField("title")])
    local.put(_texts(40))
    fake = FakeS3Vectors()  # a new bucket: ENHANCED indexes
    remote = S3VectorsStore("shop-vectors", "products", client=fake.client(), dimension=8)
    assert not remote.text_fields

    report = copy_store(local, remote)
    assert report.text_fields_added == ("title",) and report.written == 40
    assert [f.key for f in remote.text_fields] == ["title"]
    found = {m.key for m in remote.query_text({"title": "WH-1000XM5"}, top_k=50)}
    assert found == {m.key for m in local.query_text({"title": "WH-1000XM5"}, top_k=50)}
    assert len(found) == 10
    assert copy_store(local, remote).text_fields_added == ()  # already there

    back = LocalVectorStore(dimension=8)
    assert copy_store(remote, back).text_fields_added == ("title",)
    assert back.text_fields == local.text_fields
    assert (
        copy_store(local, LocalVectorStore(dimension=8), text_fields=False).text_fields_added == ()
    )


def test_a_classic_target_is_copied_without_words_and_a_language_clash_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import datetime, timezone

    from crossmodal_search.stores import TextField
    from crossmodal_search.testing import FakeS3Vectors

    local = LocalVectorStore(dimension=8, text_fields=[TextField("title")])
    local.put(_texts(12))
    old = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()
    classic = S3VectorsStore(
        "old-bucket", "products", client=FakeS3Vectors(wall_clock=lambda: old).client(), dimension=8
    )
    assert classic.index_mode == "CLASSIC"
    with caplog.at_level("WARNING", logger="crossmodal_search.stores"):
        report = copy_store(local, classic)
    assert report.written == 12 and report.text_fields_added == ()
    assert "the target index is CLASSIC" in caplog.text

    english = LocalVectorStore(dimension=8, text_fields=[TextField("title", language="en")])
    with pytest.raises(IndexMismatchError, match="analyzed as standard in the source"):
        copy_store(local, english)
    assert len(english) == 0  # refused before anything was written
