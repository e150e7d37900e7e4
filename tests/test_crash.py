"""Crash safety: a writer process SIGKILLed mid-write leaves a readable, consistent store.

The writer applies a deterministic sequence of operations and prints the index of each one
after the call returns (that is, after it is committed). The test kills it at a random moment,
reopens the directory and checks that the store holds exactly the state after the last
reported operation, or after the one that was in flight, never anything in between. It then
resumes writing in the same directory, so recovery is exercised several times in a row.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crossmodal_search.stores import LocalVectorStore, StoreLimits, VectorRecord

DIM = 32

WRITER = """
import sys
import numpy as np
from crossmodal_search.stores import LocalVectorStore, TextField, VectorRecord
sys.path.insert(0, {tests_dir!r})
from test_crash import operation

fields = [TextField("body")] if {text!r} else []
store = LocalVectorStore({path!r}, dimension={dim}, distance_metric="euclidean", text_fields=fields)
start = int(sys.argv[1])
print("ready", flush=True)
for i in range(start, start + 10_000):
    kind, payload = operation(i)
    if kind == "put":
        store.put([VectorRecord(k, v, m) for k, v, m in payload])
    else:
        store.delete(payload)
    if fields and i % 5 == 0:  # the BM25 index is live (and kept in step) while the kill lands
        store.query_text({{"body": f"op{{i}}"}}, top_k=3)
    print(i, flush=True)
"""


def vector(key: str) -> np.ndarray:
    seed = int.from_bytes(key.encode(), "little") % (2**32)
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


def operation(i: int) -> tuple[str, list]:  # type: ignore[type-arg]
    """Operation ``i`` of the writer: mostly puts (some large, some upserts), some deletes."""
    rng = random.Random(i)
    if i % 4 == 3:
        return "delete", [f"k{rng.randrange(3000)}" for _ in range(rng.randint(1, 40))]
    size = 1500 if i % 7 == 0 else rng.randint(1, 60)
    keys = list(dict.fromkeys(f"k{rng.randrange(3000)}" for _ in range(size)))
    return "put", [
        (k, vector(f"{k}@{i}"), {"op": i, "tags": [k, "x"], "body": f"op{i} {k}"}) for k in keys
    ]


def state_after(ops: int) -> dict[str, int]:
    """Key -> index of the operation that last wrote it, after operations ``0..ops-1``."""
    state: dict[str, int] = {}
    for i in range(ops):
        kind, payload = operation(i)
        if kind == "put":
            for key, _, _ in payload:
                state[key] = i
        else:
            for key in payload:
                state.pop(key, None)
    return state


def read_state(path: Path) -> dict[str, int]:
    with LocalVectorStore(path, read_only=True) as store:
        out: dict[str, int] = {}
        for record in store.records():
            op = record.metadata["op"]
            assert isinstance(op, int)
            assert record.metadata["tags"] == [record.key, "x"]
            np.testing.assert_array_equal(record.vector, vector(f"{record.key}@{op}"))
            out[record.key] = op
        return out


def check_text_index(path: Path, state: dict[str, int]) -> None:
    """The reopened store's full-text answers agree with its records: each key is found by its
    own word, and by the word of the operation that last wrote it, with nothing else."""
    with LocalVectorStore(path, read_only=True, limits=StoreLimits.relaxed()) as store:
        assert [f.key for f in store.text_fields] == ["body"]
        for op in sorted(set(state.values()))[-5:]:
            found = {m.key for m in store.query_text({"body": f"op{op}"}, top_k=5000)}
            assert found == {k for k, v in state.items() if v == op}
        for key in list(state)[:20]:
            assert [m.key for m in store.query_text({"body": key}, top_k=1)] == [key]


@pytest.mark.parametrize("text", [False, True], ids=["vectors", "with-text-fields"])
def test_sigkill_mid_write_leaves_previous_or_next_state(tmp_path: Path, text: bool) -> None:
    path = tmp_path / "store"
    tests_dir = str(Path(__file__).parent)
    script = WRITER.format(tests_dir=tests_dir, path=str(path), dim=DIM, text=text)
    rng = random.Random(2024)
    done = 0  # operations known to be in the store
    kills = 0
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(done)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": tests_dir},
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.6))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err
        kills += 1
        reported = [int(line) for line in out.split()]
        committed = reported[-1] + 1 if reported else done
        state = read_state(path)
        if state == state_after(committed):
            done = committed
        else:
            # the operation in flight when the kill landed made it, whole
            assert state == state_after(committed + 1), f"inconsistent after {committed} ops"
            done = committed + 1
        if text:
            check_text_index(path, state)
    assert kills == 6
    assert done > 6, "the writer should have committed operations between kills"
    with LocalVectorStore(path, distance_metric="euclidean") as store:  # writable again
        assert len(store) == len(state_after(done))
    leftovers = {p.name for p in path.iterdir()} - {"manifest.json", ".lock"}
    assert all(name.startswith("seg-") for name in leftovers)


@pytest.mark.parametrize("stage", ["segment", "manifest_tmp"])
def test_interrupted_commit_keeps_previous_state(tmp_path: Path, stage: str) -> None:
    """A crash between writing files and renaming the manifest: the old state stays."""
    with LocalVectorStore(tmp_path, dimension=2) as store:
        store.put([VectorRecord.create("a", [1, 0])])
        manifest_before = (tmp_path / "manifest.json").read_bytes()
    if stage == "segment":
        (tmp_path / "seg-00000077.npy").write_bytes(b"\x93NUMPY partial")
        (tmp_path / "seg-00000077.jsonl").write_text('{"k":"b","n":1.0,"m":{}}\n')
    else:
        (tmp_path / "manifest.json.tmp").write_bytes(manifest_before[:10])
    with LocalVectorStore(tmp_path) as store:
        assert list(store.keys()) == ["a"]
    assert (tmp_path / "manifest.json").read_bytes() == manifest_before
    assert sorted(p.name for p in tmp_path.iterdir() if "77" in p.name or "tmp" in p.name) == []
