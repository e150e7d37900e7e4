"""A local store never deletes what it cannot account for: lost manifests, bit flips, full and
read-only disks give typed errors, `check` explains and `recover` restores; readers follow the
writer."""

from __future__ import annotations

import errno
import json
import os
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal_search.cli import main
from crossmodal_search.errors import StoreCorruptedError, StoreIOError
from crossmodal_search.stores import (
    LocalVectorStore,
    VectorRecord,
    check_local_store,
    recover_local_store,
)

DIM = 8


def _vector(i: int) -> np.ndarray:
    return np.random.default_rng(i).normal(size=DIM).astype(np.float32)


def _build(path: Path, n: int = 300, *, batch: int = 50) -> dict[str, Any]:
    """A store of ``n`` records written ``batch`` at a time (several segments, merges), with
    some deletes; returns what it holds."""
    with LocalVectorStore(path, dimension=DIM) as store:
        for start in range(0, n, batch):
            store.put(
                [VectorRecord(f"k{i}", _vector(i), {"i": i}) for i in range(start, start + batch)]
            )
        store.delete(["k3", "k4"])
        store.put([VectorRecord("k5", _vector(5005), {"i": -5})])  # the newest segment
        return _snapshot(store)


def _snapshot(store: LocalVectorStore) -> dict[str, Any]:
    return {r.key: (r.vector.tolist(), dict(r.metadata)) for r in store.records()}


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != ".lock")


def _segments(path: Path) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = json.loads((path / "manifest.json").read_text())["segments"]
    return segments


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- manifest loss


def test_a_lost_manifest_is_recovered_with_every_record(tmp_path: Path) -> None:
    before = _build(tmp_path)
    (tmp_path / "manifest.json").unlink()
    files = _files(tmp_path)

    with pytest.raises(StoreCorruptedError, match="crossmodal store recover"):
        LocalVectorStore(tmp_path)
    assert _files(tmp_path) == files  # the refused open deleted nothing
    report = check_local_store(tmp_path)
    assert not report.ok and report.manifest == "missing"

    recovered = recover_local_store(tmp_path)
    assert recovered.vectors == len(before) == 298
    assert recovered.set_aside == () and recovered.lost_keys == ()
    with LocalVectorStore(tmp_path) as store:
        assert _snapshot(store) == before
        store.put([VectorRecord("new", _vector(1000), {"i": 1000})])  # writable again
    assert check_local_store(tmp_path).ok


def test_cli_check_and_recover(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "shop"
    before = _build(store, 120)
    (store / "manifest.json").unlink()
    assert main(["store", "check", str(store)]) == 1
    out = capsys.readouterr().out
    assert "manifest missing" in out and "crossmodal store recover" in out
    assert main(["store", "recover", str(store)]) == 0
    assert f"recovered {store}: {len(before)} vectors" in capsys.readouterr().out
    assert main(["store", "check", str(store)]) == 0
    assert f"healthy: {len(before)} vectors" in capsys.readouterr().out
    assert main(["store", "recover", str(store)]) == 0
    assert "nothing to recover" in capsys.readouterr().out


def test_an_interrupted_last_write_is_set_aside_when_recovering(tmp_path: Path) -> None:
    before = _build(tmp_path, 100)
    (tmp_path / "manifest.json").unlink()
    # A writer died while writing segment 99: its vectors are there, its records half written.
    (tmp_path / "seg-00000099.npy").write_bytes(b"\x93NUMPY partial")
    (tmp_path / "seg-00000099.jsonl").write_text('{"k": "x", "n": 1.0, "m": {}}\n{"k": "y"')
    report = recover_local_store(tmp_path)
    assert report.vectors == len(before)
    assert any("seg-00000099.jsonl" in moved for moved in report.set_aside)
    assert (tmp_path / "damaged-seg-00000099.npy").exists()  # moved aside, not deleted
    with LocalVectorStore(tmp_path) as store:
        assert _snapshot(store) == before
        store.put([VectorRecord("z", _vector(7), {})])
        assert store.get(["z"]).records  # new segment ids do not collide with the old ones


# ---------------------------------------------------------------- bit flips


@pytest.mark.parametrize("target", ["npy", "jsonl", "trailer"])
def test_a_bit_flip_in_a_segment_is_detected_and_never_silent(tmp_path: Path, target: str) -> None:
    before = _build(tmp_path, 100, batch=100)
    newest = _segments(tmp_path)[-1]["id"]
    npy = tmp_path / f"seg-{newest:08d}.npy"
    jsonl = tmp_path / f"seg-{newest:08d}.jsonl"
    if target == "npy":
        _flip(npy, npy.stat().st_size - 3)  # a vector component
    elif target == "jsonl":
        _flip(jsonl, 3)  # the first key: "k5" would silently become another key
    else:
        _flip(jsonl, jsonl.stat().st_size - 10)
    files = _files(tmp_path)

    with pytest.raises(StoreCorruptedError, match=f"seg-{newest:08d}") as info:
        LocalVectorStore(tmp_path)
    assert "crossmodal store check" in str(info.value)
    assert _files(tmp_path) == files
    check = check_local_store(tmp_path)
    assert [s.status for s in check.segments if s.seg_id == newest] == ["damaged"]

    with pytest.raises(StoreCorruptedError, match="--drop-damaged"):
        recover_local_store(tmp_path)
    assert _files(tmp_path) == files
    report = recover_local_store(tmp_path, drop_damaged=True)
    assert report.set_aside
    with LocalVectorStore(tmp_path) as store:
        after = _snapshot(store)
    # Only the damaged segment's write is gone: k5's update and the k3/k4 deletes, say.
    assert set(after) <= set(before) | {"k3", "k4"}
    assert {k: v for k, v in after.items() if k not in ("k3", "k4", "k5")} == {
        k: v for k, v in before.items() if k not in ("k3", "k4", "k5")
    }


def test_a_bit_flip_in_the_manifest_is_detected_and_rebuilt_from_the_segments(
    tmp_path: Path,
) -> None:
    before = _build(tmp_path)
    manifest = tmp_path / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"puts": 50', '"puts": 51', 1))  # still valid JSON
    with pytest.raises(StoreCorruptedError, match="checksum"):
        LocalVectorStore(tmp_path)
    report = recover_local_store(tmp_path)
    assert any("manifest.json.damaged" in moved for moved in report.set_aside)
    with LocalVectorStore(tmp_path) as store:
        assert _snapshot(store) == before


def _format_1_store(path: Path) -> None:
    """A store as earlier releases wrote it: no checksums, no segment trailers."""
    path.mkdir()
    np.save(path / "seg-00000001.npy", np.stack([_vector(0), _vector(1)]))
    lines = [{"k": "a", "n": 1.0, "m": {"i": 0}}, {"k": "b", "n": 1.0, "m": {"i": 1}}]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    (path / "seg-00000001.jsonl").write_bytes(body)
    manifest = {
        "format": "crossmodal-search/local-vector-store",
        "version": 1,
        "dimension": DIM,
        "distance_metric": "euclidean",
        "storage_dtype": "float32",
        "non_filterable_metadata_keys": ["text"],
        "generation": 1,
        "segments": [
            {
                "id": 1,
                "puts": 2,
                "deletes": 0,
                "vectors_bytes": (path / "seg-00000001.npy").stat().st_size,
                "records_bytes": len(body),
            }
        ],
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_store_written_before_checksums_still_opens_and_is_upgraded(tmp_path: Path) -> None:
    _format_1_store(tmp_path / "old")
    with LocalVectorStore(tmp_path / "old") as store:
        assert sorted(store.keys()) == ["a", "b"]
        store.put([VectorRecord("c", _vector(2), {})])
    upgraded = json.loads((tmp_path / "old" / "manifest.json").read_text())
    assert upgraded["version"] == 2 and upgraded["segments"][-1]["vectors_crc"] > 0
    # Once written by this release, the store describes itself: no settings needed.
    (tmp_path / "old" / "manifest.json").unlink()
    assert recover_local_store(tmp_path / "old").vectors == 3


def test_a_format_1_store_without_manifest_is_recovered_with_its_metric(tmp_path: Path) -> None:
    from crossmodal_search.errors import ConfigurationError

    _format_1_store(tmp_path / "old")
    (tmp_path / "old" / "manifest.json").unlink()
    with pytest.raises(ConfigurationError, match="--distance-metric"):
        recover_local_store(tmp_path / "old")
    report = recover_local_store(
        tmp_path / "old", distance_metric="euclidean", non_filterable_metadata_keys=["text"]
    )
    assert report.vectors == 2
    with LocalVectorStore(tmp_path / "old", distance_metric="euclidean") as store:
        assert store.get(["a"]).records[0].metadata == {"i": 0}


# ---------------------------------------------------------------- full and read-only disks


def test_a_full_disk_is_a_typed_error_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _build(tmp_path, 100)
    files = _files(tmp_path)
    store = LocalVectorStore(tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the file system reports ENOSPC on flush
    with pytest.raises(StoreIOError, match="disk is full") as info:
        store.put([VectorRecord("new", _vector(9), {})])
    assert info.value.errno == errno.ENOSPC and "nothing was changed" in str(info.value)
    with pytest.raises(StoreIOError):
        store.delete(["k10"])
    monkeypatch.undo()
    assert _snapshot(store) == before  # the in-memory state did not move either
    store.close()
    assert _files(tmp_path) == files  # no partial segment left behind
    with LocalVectorStore(tmp_path) as again:
        assert _snapshot(again) == before


def test_a_read_only_mount_says_to_open_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _build(tmp_path, 60)
    real_open = os.open

    def read_only_fs(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_fs)
    with pytest.raises(StoreIOError, match="read_only=True") as info:
        LocalVectorStore(tmp_path)
    assert info.value.errno == errno.EROFS
    with LocalVectorStore(tmp_path, read_only=True) as reader:
        assert _snapshot(reader) == before


# ---------------------------------------------------------------- readers follow the writer


def test_a_reader_serves_what_the_writer_commits_through_merges(tmp_path: Path) -> None:
    rng = random.Random(3)
    writer = LocalVectorStore(tmp_path, dimension=DIM, distance_metric="euclidean")
    reader = LocalVectorStore(tmp_path, read_only=True)
    try:
        model: dict[str, int] = {}
        for step in range(150):
            if rng.random() < 0.75 or not model:
                keys = {f"k{rng.randrange(400)}" for _ in range(rng.randint(1, 40))}
                writer.put([VectorRecord(k, _vector(step), {"step": step}) for k in keys])
                model.update(dict.fromkeys(keys, step))
            else:
                doomed = rng.sample(sorted(model), k=min(len(model), rng.randint(1, 15)))
                writer.delete(doomed)
                for k in doomed:
                    del model[k]
            if step % 5 == 0:  # the reader only looks now and then: several commits at once
                assert len(reader) == len(model)
                got = {r.key: r.metadata["step"] for r in reader.records()}
                assert got == model
                q = _vector(10_000 + step)
                assert reader.query(q, top_k=10) == writer.query(q, top_k=10)
    finally:
        writer.close()
        reader.close()


def test_checksums_cover_every_byte_of_both_files(tmp_path: Path) -> None:
    _build(tmp_path, 40)
    for seg in _segments(tmp_path):
        npy = tmp_path / f"seg-{seg['id']:08d}.npy"
        jsonl = tmp_path / f"seg-{seg['id']:08d}.jsonl"
        assert zlib.crc32(npy.read_bytes()) == seg["vectors_crc"]
        assert zlib.crc32(jsonl.read_bytes()) == seg["records_crc"]
