"""Large local stores on disk: open time, first query and resident memory of a memory-mapped
store, and a store larger than RAM still answering exact queries.

A store of ``n x d`` random unit vectors (float32, cosine) is written to a temporary directory
as one base segment (what a full merge leaves; ``crossmodal store check`` verifies it), its
pages are evicted from the page cache (``posix_fadvise(DONTNEED)``, so the first query reads
from disk), and a fresh process opens it (``memory_map`` is the default at this size) and
measures: the open, the resident memory (RSS, split into anonymous and file-backed pages)
before any query, the first query (which reads the keys and metadata, and pages in every
vector), later queries, and RSS after them. Answers are checked against a float64 brute force
over the same vectors, regenerated block by block.

``python benchmarks/large_store.py [--quick] [--rows N --dim D]`` runs one size by hand; the
larger-than-RAM run is ``--rows`` sized to twice the free memory (several minutes, tens of GB
on disk: run it once, by hand; ``make bench`` does not).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import Section, Table  # noqa: E402

K = 10
QUERIES = 4
BLOCK = 65_536
CATEGORIES = 100
SEED = 23


@dataclass(frozen=True)
class Size:
    n: int
    d: int

    @property
    def name(self) -> str:
        n = f"{self.n / 1e6:g}M" if self.n >= 1_000_000 else f"{self.n // 1000}k"
        return f"{n} x {self.d}"

    @property
    def vector_bytes(self) -> int:
        return self.n * self.d * 4


QUICK = (Size(50_000, 256),)
FULL = (Size(1_000_000, 1024),)


# --------------------------------------------------------------------------- the data


def _block(b: int, rows: int, d: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int16]]:
    """Block ``b`` of the data set: unit vectors and categories (reproducible)."""
    rng = np.random.default_rng([SEED, b])
    x = rng.standard_normal((rows, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, rng.integers(0, CATEGORIES, rows).astype(np.int16)


def _blocks(size: Size) -> Iterator[tuple[int, npt.NDArray[np.float32], npt.NDArray[np.int16]]]:
    for start in range(0, size.n, BLOCK):
        x, cat = _block(start // BLOCK, min(BLOCK, size.n - start), size.d)
        yield start, x, cat


class _Keys(Sequence[str]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        return str(i)

    def __iter__(self) -> Iterator[str]:
        return map(str, range(self.n))


class _Metadata(Sequence[dict[str, Any]]):
    def __init__(self, categories: npt.NDArray[np.int16]) -> None:
        self.categories = categories

    def __len__(self) -> int:
        return int(self.categories.shape[0])

    def __getitem__(self, i: Any) -> Any:
        return {"category": f"c{int(self.categories[i]):02d}"}


def write_store(path: Path, size: Size) -> float:
    """Write the data set as a local store directory (one base segment); seconds taken."""
    from crossmodal_search.stores._files import (
        Manifest,
        SegmentEntry,
        commit_manifest,
        write_records,
    )

    started = time.perf_counter()
    path.mkdir(parents=True)
    manifest = Manifest(size.d, "cosine", "float32", frozenset())
    vectors = path / "seg-00000001.npy"
    norms = np.empty(size.n, dtype=np.float64)
    categories = np.empty(size.n, dtype=np.int16)
    head = _npy_header(size)
    crc = zlib.crc32(head)
    with open(vectors, "wb") as fh:
        fh.write(head)
        for start, x, cat in _blocks(size):
            # What LocalVectorStore.put stores as each vector's norm (RowTable.prepare).
            norms[start : start + x.shape[0]] = np.sqrt(np.einsum("ij,ij->i", x, x))
            categories[start : start + x.shape[0]] = cat
            data = x.tobytes()
            fh.write(data)
            crc = zlib.crc32(data, crc)
        fh.flush()
        os.fsync(fh.fileno())
        vectors_bytes = fh.tell()
    trailer = {
        "id": 1,
        "puts": size.n,
        "deletes": 0,
        "vectors_bytes": vectors_bytes,
        "vectors_crc": crc,
        "base": True,
        "store": manifest.settings(),
    }
    records = path / "seg-00000001.jsonl"
    records_bytes, records_crc = write_records(
        records, _Keys(size.n), norms, _Metadata(categories), [], trailer
    )
    seg = SegmentEntry(1, size.n, 0, vectors_bytes, records_bytes, crc, records_crc)
    commit_manifest(path, Manifest(size.d, "cosine", "float32", frozenset(), 1, (seg,)))
    return time.perf_counter() - started


def _npy_header(size: Size) -> bytes:
    import io

    head = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (size.n, size.d)}
    np.lib.format.write_array_header_1_0(head, header)
    return head.getvalue()


def truth(size: Size, queries: npt.NDArray[np.float32]) -> dict[str, list[list[str]]]:
    """The exact top-K keys per query by float64 cosine distance (ties by key), unfiltered and
    with ``category == c07``."""
    q64 = queries.astype(np.float64)
    qn = np.linalg.norm(q64, axis=1)
    best: dict[str, list[list[tuple[float, str]]]] = {
        "all": [[] for _ in queries],
        "c07": [[] for _ in queries],
    }
    for start, x, cat in _blocks(size):
        x64 = x.astype(np.float64)
        dist = 1.0 - (x64 @ q64.T) / (np.linalg.norm(x64, axis=1)[:, None] * qn)
        for name, rows in (("all", np.arange(x.shape[0])), ("c07", np.flatnonzero(cat == 7))):
            for j in range(queries.shape[0]):
                col = dist[rows, j]
                top = rows[np.argsort(col, kind="stable")[: K + 5]]
                merged = best[name][j] + [(float(dist[r, j]), str(start + r)) for r in top]
                best[name][j] = sorted(merged)[: K + 5]
    return {name: [[key for _, key in lst[:K]] for lst in found] for name, found in best.items()}


# --------------------------------------------------------------------------- measuring


def _rss() -> dict[str, int]:
    """This process's resident memory in bytes: total, anonymous and file-backed pages."""
    with open("/proc/self/status") as fh:
        found = dict(re.findall(r"^(VmRSS|RssAnon|RssFile):\s+(\d+) kB", fh.read(), re.M))
    return {k: int(v) * 1024 for k, v in found.items()}


def _evict(path: Path) -> None:
    """Drop the directory's pages from the page cache, so the first query reads the disk."""
    for f in path.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure(path: Path, queries_file: Path) -> dict[str, Any]:
    """In a fresh process: open the store, query it, report times, RSS and answers."""
    from crossmodal_search.stores import LocalVectorStore

    queries = np.load(queries_file)
    out: dict[str, Any] = {"rss_start": _rss()}
    started = time.perf_counter()
    store = LocalVectorStore(path, read_only=True, memory_map=True)
    out["open_s"] = time.perf_counter() - started
    out["rss_open"] = _rss()
    started = time.perf_counter()
    first = store.query(queries[0], top_k=K)
    out["first_query_s"] = time.perf_counter() - started
    out["rss_first"] = _rss()
    times = []
    answers = [[m.key for m in first]]
    for q in queries[1:]:
        started = time.perf_counter()
        answers.append([m.key for m in store.query(q, top_k=K)])
        times.append(time.perf_counter() - started)
    out["query_s"] = float(np.median(times))
    out["answers"] = answers
    started = time.perf_counter()
    out["filtered"] = [
        [m.key for m in store.query(q, top_k=K, filter={"category": "c07"})] for q in queries
    ]
    out["filtered_s"] = (time.perf_counter() - started) / len(queries)
    out["rss_end"] = _rss()
    store.close()
    return out


def run_size(size: Size, section: Section, *, quick: bool, workdir: Path | None = None) -> None:
    from crossmodal_search.stores import check_local_store

    base = Path(tempfile.mkdtemp(prefix="crossmodal-large-", dir=workdir))
    try:
        path = base / "store"
        write_s = write_store(path, size)
        started = time.perf_counter()
        check = check_local_store(path)
        check_s = time.perf_counter() - started
        queries = np.random.default_rng(SEED + 1).standard_normal((QUERIES, size.d))
        queries_file = base / "queries.npy"
        np.save(queries_file, queries.astype(np.float32))
        _evict(path)
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), str(queries_file)],
            check=False,
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise RuntimeError(f"measuring {size.name} failed:\n{child.stderr[-3000:]}")
        got = json.loads(child.stdout.strip().splitlines()[-1])
        want = truth(size, queries.astype(np.float32))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _report(size, section, got, want, quick=quick, write_s=write_s, check=(check.ok, check_s))


def _report(
    size: Size,
    section: Section,
    got: dict[str, Any],
    want: dict[str, list[list[str]]],
    *,
    quick: bool,
    write_s: float,
    check: tuple[bool, float],
) -> None:
    mib = 1024 * 1024
    rss_open = got["rss_open"]
    table = Table(
        f"{size.name} float32 on disk ({size.vector_bytes / 2**30:.2f} GiB of vectors), "
        "memory-mapped, pages evicted before opening",
        ["measure", "value"],
    )
    table.rows += [
        ["write (one base segment)", f"{write_s:.1f} s"],
        ["`crossmodal store check` (every checksum)", f"{check[1]:.1f} s"],
        ["open", f"{got['open_s'] * 1e3:.1f} ms"],
        [
            "RSS after open (anonymous + file)",
            f"{rss_open['VmRSS'] / mib:.0f} MiB ({rss_open['RssAnon'] / mib:.0f} + "
            f"{rss_open['RssFile'] / mib:.0f}); before open {got['rss_start']['VmRSS'] / mib:.0f}",
        ],
        [
            "first query (reads keys and metadata, pages vectors in)",
            f"{got['first_query_s']:.2f} s",
        ],
        ["later queries (median)", f"{got['query_s'] * 1e3:.1f} ms"],
        ["filtered query (~1 %), mean of first uses", f"{got['filtered_s'] * 1e3:.1f} ms"],
        [
            "RSS after queries (anonymous + file)",
            f"{got['rss_end']['VmRSS'] / mib:.0f} MiB ({got['rss_end']['RssAnon'] / mib:.0f} + "
            f"{got['rss_end']['RssFile'] / mib:.0f})",
        ],
    ]
    section.tables.append(table)
    exact = got["answers"] == want["all"] and got["filtered"] == want["c07"]
    section.check(
        f"large store {size.name}: mapped store returns the exact top 10",
        "smoke",
        exact,
        f"{sum(a == b for a, b in zip(got['answers'], want['all'], strict=True))} of {QUERIES} "
        f"queries, {sum(a == b for a, b in zip(got['filtered'], want['c07'], strict=True))} "
        "filtered, equal to a float64 brute force",
    )
    section.check(
        f"large store {size.name}: store check verifies every checksum", "smoke", check[0], ""
    )
    section.data.setdefault("sizes", {})[size.name] = {
        k: v for k, v in got.items() if k not in ("answers", "filtered")
    } | {"write_s": write_s, "check_s": check[1]}
    if quick:
        return
    section.check(
        f"large store {size.name}: open <= 0.5 s",
        "target",
        got["open_s"] <= 0.5,
        f"{got['open_s'] * 1e3:.1f} ms",
    )
    section.check(
        f"large store {size.name}: RSS before the first query <= 100 MB",
        "target",
        rss_open["VmRSS"] <= 100e6,
        f"{rss_open['VmRSS'] / 1e6:.0f} MB",
    )


def run(*, quick: bool, scale: float = 1.0, sizes: Sequence[Size] | None = None) -> Section:
    """Run the large-store benchmark and return its report section."""
    chosen = sizes or (QUICK if quick else FULL)
    if scale != 1.0 and sizes is None:
        chosen = tuple(Size(max(10_000, round(s.n * scale)), s.d) for s in chosen)
    section = Section(
        "Large stores",
        quick=quick,
        intro=(
            "A persisted store opened with its segment files memory-mapped (`memory_map=True`, "
            "the default from 256 MiB of vectors): opening reads the manifest and stats the "
            "segments; the first "
            "call reads the keys and metadata; vectors are paged in by the searches. Measured "
            "in a fresh process after evicting the files from the page cache."
        ),
    )
    for size in chosen:
        run_size(size, section, quick=quick)
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, help="rows of a single run by hand")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the store")
    parser.add_argument("--measure", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    section = Section("Large stores", quick=args.quick)
    sizes = [Size(args.rows, args.dim)] if args.rows else list(QUICK if args.quick else FULL)
    for size in sizes:
        run_size(size, section, quick=args.quick, workdir=args.workdir)
    for table in section.tables:
        print(table.markdown(), end="\n\n")
    for c in section.checks:
        print(f"{'ok  ' if c.passed else 'FAIL'} [{c.kind}] {c.name}: {c.detail}")
    return 0 if all(c.passed for c in section.checks if c.kind == "smoke") else 1


if __name__ == "__main__":
    sys.exit(main())
