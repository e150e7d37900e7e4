"""Search speed: LocalVectorStore against bare numpy, the memory-bandwidth floor and faiss.

For each data set (n x d unit vectors) every contender answers the same queries, interleaved
within each repeat. The floor is the time to stream the same matrix once (the faster of
``np.add.reduce(X, axis=0)`` and ``X @ ones``), measured in the same repeat: no exact scan can
beat it. Recall@10 is against the exact float32 top 10 (numpy, computed once).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._contenders import (
    Contender,
    K,
    build_store,
    cycling,
    faiss_contender,
    numpy_contender,
    store_class,
    store_contender,
    store_metadata,
    timed,
)
from benchmarks._data import exact_top, random_unit, recall_at, structured_unit
from benchmarks._harness import (
    Section,
    Table,
    median,
    mib,
    ms,
    paired_ratio,
    ratio,
    rss_bytes,
)
from benchmarks._search_filtered import run_filtered
from benchmarks._search_notes import BATCH, SCAN_COPY, notes
from crossmodal_search.stores._ann import FunnelAccelerator, HnswAccelerator

log = logging.getLogger("benchmarks.search")

CATEGORIES = 100  # a filter on one category keeps ~1 % of the rows


@dataclass(frozen=True)
class DataSet:
    kind: str  # "random" | "structured"
    n: int
    d: int
    float16: bool = False  # float16 store and faiss's fp16 scalar quantizer
    scan_copy: bool = False  # float32 store with a bfloat16 scan copy (scan_dtype="bfloat16")
    funnel: bool = False
    hnsw: bool = False
    batch: bool = True
    filtered: bool = True
    repeats: int | None = None  # overrides the plan's (large sets are slow and steady)
    queries: int | None = None  # overrides the plan's number of recall queries

    @property
    def name(self) -> str:
        n = f"{self.n // 1_000_000}M" if self.n >= 1_000_000 else f"{self.n // 1000}k"
        return f"{self.kind} {n} x {self.d}"


@dataclass(frozen=True)
class Plan:
    sets: tuple[DataSet, ...]
    queries: int  # distinct queries (recall is averaged over all of them)
    repeats: int
    hnsw_ef: tuple[int, ...]
    sample_seconds: float = 0.02  # back-to-back calls per timing sample for fast contenders


FULL = Plan(
    sets=(
        DataSet("random", 100_000, 1024, float16=True, scan_copy=True, funnel=True, hnsw=True),
        DataSet("structured", 100_000, 1024, float16=True, scan_copy=True, funnel=True, hnsw=True),
        DataSet("random", 1_000_000, 1024, float16=True, repeats=7, queries=32),
        DataSet("random", 100_000, 256),
        DataSet("random", 1_000_000, 256, repeats=7, queries=32),
    ),
    queries=64,
    repeats=11,
    hnsw_ef=(64, 128, 256),  # 256: the default
)

QUICK = Plan(
    sets=(
        DataSet("random", 10_000, 1024, float16=True, scan_copy=True, funnel=True),
        DataSet("structured", 5_000, 1024, funnel=True, hnsw=True),
    ),
    queries=16,
    repeats=3,
    hnsw_ef=(64,),
    sample_seconds=0.002,
)


@dataclass
class _Run:
    """One data set's run: its data, its contenders and what was measured so far."""

    ds: DataSet
    plan: Plan
    section: Section
    quick: bool
    x: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    category: npt.NDArray[np.int16]
    truth: list[list[int]]
    contenders: list[Contender]
    build_seconds: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    floor: list[float] = field(default_factory=list)
    recalls: dict[str, float] = field(default_factory=dict)
    exact_label: str | None = None


def run_dataset(
    ds: DataSet, plan: Plan, section: Section, quick: bool, *, filtered_only: bool = False
) -> None:
    """One data set: every contender's single, batch and filtered queries (``filtered_only``:
    the filtered ones, with the exact store and the numpy and faiss baselines only)."""
    if filtered_only:
        ds = dataclasses.replace(
            ds, float16=False, scan_copy=False, funnel=False, hnsw=False, filtered=True
        )
    plan = dataclasses.replace(
        plan, repeats=ds.repeats or plan.repeats, queries=ds.queries or plan.queries
    )
    log.info("search: %s: generating", ds.name)
    seed = 7 if ds.kind == "random" else 11
    gen = random_unit if ds.kind == "random" else structured_unit
    both = gen(ds.n + plan.queries, ds.d, seed)
    x = both[: ds.n]
    queries = np.ascontiguousarray(both[ds.n :]) if ds.kind == "structured" else None
    if queries is None:
        queries = random_unit(plan.queries, ds.d, seed + 1)
    rng = np.random.default_rng(seed + 2)
    category = rng.integers(0, CATEGORIES, ds.n).astype(np.int16)
    allowed_rows = np.flatnonzero(category == 7)
    truth = exact_top(x, queries, K)
    truth_filtered = exact_top(x, queries, K, rows=allowed_rows)

    contenders: list[Contender] = [numpy_contender(x, category)]
    fz = faiss_contender(x, category)
    if fz is not None:
        contenders.append(fz)
    if ds.float16:
        fz16 = faiss_contender(x, category, fp16=True)
        if fz16 is not None:
            contenders.append(fz16)
    job = _Run(ds, plan, section, quick, x, queries, category, truth, contenders)
    metadata = _add_stores(job)
    if metadata is not None:
        _add_accelerated(job, metadata)
    if not filtered_only:
        _time_single(job)
        _check_single(job)
        _time_batches(job)
    build_seconds, result = job.build_seconds, job.result

    # ---- filters: ~1 % and ~50 % of the rows
    if ds.filtered:
        allowed = np.zeros(ds.n, dtype=bool)
        allowed[allowed_rows] = True
        run_filtered(
            ds.name,
            x,
            contenders,
            queries,
            allowed,
            truth_filtered,
            section,
            result,
            timing={"repeats": plan.repeats, "sample_seconds": plan.sample_seconds},
            targets=ds.n == 100_000 and ds.kind == "random" and not quick,
        )

    if build_seconds:
        section.data.setdefault("build_seconds", {})[ds.name] = build_seconds
    section.data.setdefault("datasets", {})[ds.name] = result
    contenders.clear()


def _add_stores(job: _Run) -> list[dict[str, Any]] | None:
    """The LocalVectorStore contenders (exact float32 and float16)."""
    ds = job.ds
    x = job.x
    category = job.category
    contenders = job.contenders
    build_seconds = job.build_seconds
    if store_class() is None:
        return None
    metadata = store_metadata(category)
    log.info("search: %s: building LocalVectorStore", ds.name)
    start = time.perf_counter()
    store = build_store(x, metadata)
    build_seconds["LocalVectorStore.put (all rows)"] = time.perf_counter() - start
    contenders.append(store_contender("LocalVectorStore.query (exact)", "sdk", store, x.nbytes))
    if ds.float16:
        # The default kernel ("auto": NumKong when the simd extra is installed) is the one
        # the float16 target is checked on; numpy's is shown next to it where affordable.
        store16 = build_store(x, metadata, storage_dtype="float16")
        kernel = store16.float16_kernel
        contenders.append(
            store_contender(
                f"LocalVectorStore float16 (exact, {kernel} kernel)",
                "fast",
                store16,
                x.nbytes // 2,
            )
        )
        if kernel != "numpy" and ds.n <= 100_000:
            slow16 = build_store(x, metadata, storage_dtype="float16", float16_kernel="numpy")
            contenders.append(
                store_contender(
                    "LocalVectorStore float16 (exact, numpy kernel)",
                    "fast",
                    slow16,
                    x.nbytes // 2,
                )
            )
    return metadata


def _add_accelerated(job: _Run, metadata: list[dict[str, Any]]) -> None:
    """Stores with a scan copy, a funnel or an HNSW graph."""
    ds = job.ds
    plan = job.plan
    section = job.section
    x = job.x
    queries = job.queries
    contenders = job.contenders
    build_seconds = job.build_seconds
    if ds.scan_copy:
        store_b = build_store(x, metadata, scan_dtype="bfloat16")
        store_b.query(queries[0], top_k=K)  # builds the copy
        contenders.append(store_contender(SCAN_COPY, "fast", store_b, x.nbytes + x.nbytes // 2))
    if ds.funnel and ds.d > 256:
        funnel = FunnelAccelerator()
        store_f = build_store(x, metadata, accelerator=funnel)
        store_f.query(queries[0], top_k=K)  # builds the prefix copy
        contenders.append(
            store_contender(
                f"LocalVectorStore funnel (256 dims {funnel.prefix_storage}, "
                f"{funnel.candidates} re-ranked)",
                "fast",
                store_f,
                x.nbytes + funnel.nbytes,
            )
        )
    if ds.hnsw:
        log.info("search: %s: building HNSW (first query)", ds.name)
        hnsw = HnswAccelerator()
        store_h = build_store(x, metadata, accelerator=hnsw)
        before = rss_bytes()
        store_h.query(queries[0], top_k=K)  # builds the graph
        grown = rss_bytes() - before
        assert hnsw.build_seconds is not None
        build_seconds[
            f"HNSW build (hnswlib, M={hnsw.m}, ef_construction={hnsw.ef_construction})"
        ] = hnsw.build_seconds
        for ef in plan.hnsw_ef:
            c = store_contender(
                f"LocalVectorStore HNSW ef_search={ef}",
                "fast",
                store_h,
                x.nbytes + max(grown, hnsw.nbytes),
                before=functools.partial(setattr, hnsw, "ef_search", ef),
            )
            contenders.append(c)
        section.data.setdefault("hnsw_memory", {})[ds.name] = {
            "rss_growth_bytes": grown,
            "estimate_bytes": hnsw.nbytes,
        }


def _time_single(job: _Run) -> None:
    """Time single queries against the floor; the samples, floor and recalls."""
    ds = job.ds
    plan = job.plan
    section = job.section
    x = job.x
    queries = job.queries
    truth = job.truth
    ones = np.ones(job.ds.d, dtype=np.float32)
    contenders = job.contenders
    # ---- single queries
    floors: dict[str, Callable[[], object]] = {
        "floor: np.add.reduce": lambda: np.add.reduce(x, axis=0),
        "floor: X @ ones": lambda: x @ ones,
    }
    fns: dict[str, Callable[[], object]] = dict(floors)
    for c in contenders:
        assert c.single is not None
        fns[c.label] = cycling(c.single, queries)
    log.info("search: %s: timing %d single-query contenders", ds.name, len(fns))
    samples = timed(fns, repeats=plan.repeats, sample_seconds=plan.sample_seconds)
    floor = [min(a, b) for a, b in zip(*(samples[f] for f in floors), strict=True)]
    recalls = {
        c.label: recall_at([c.single(q) for q in queries], truth, K) for c in contenders if c.single
    }
    exact_label = next((c.label for c in contenders if c.kind == "sdk"), None)
    table = Table(
        f"{ds.name}: single query, top {K}",
        ["contender", "median ms", "x floor", "x numpy", "recall@10", "memory"],
        note=(
            "Floor = time to stream the matrix once (faster of `np.add.reduce(X, axis=0)` and "
            f"`X @ ones`), same repeats. Medians of {plan.repeats} repeats; ratios are medians "
            f"of per-repeat ratios; recall over {plan.queries} queries."
        ),
    )
    for name in floors:
        table.rows.append(
            [name, ms(median(samples[name])), ratio(paired_ratio(samples[name], floor)), "", "", ""]
        )
    base = samples[contenders[0].label]
    result = job.result
    result.update({"floor_ms": median(floor) * 1e3, "contenders": {}})
    for c in contenders:
        s = samples[c.label]
        table.rows.append(
            [
                c.label,
                ms(median(s)),
                ratio(paired_ratio(s, floor)),
                ratio(paired_ratio(s, base)),
                f"{recalls[c.label]:.4f}",
                mib(c.nbytes),
            ]
        )
        result["contenders"][c.label] = {
            "median_ms": median(s) * 1e3,
            "x_floor": paired_ratio(s, floor),
            "x_numpy": paired_ratio(s, base),
            "recall_at_10": recalls[c.label],
            "bytes": c.nbytes,
        }
        if exact_label and c.label != exact_label:
            result["contenders"][c.label]["speedup_vs_exact"] = paired_ratio(
                samples[exact_label], s
            )
    section.tables.append(table)
    job.samples, job.floor, job.recalls, job.exact_label = samples, floor, recalls, exact_label


def _check_single(job: _Run) -> None:
    """The checks and targets of single queries."""
    ds = job.ds
    section = job.section
    quick = job.quick
    x = job.x
    contenders = job.contenders
    result = job.result
    samples = job.samples
    floor = job.floor
    recalls = job.recalls
    exact_label = job.exact_label
    # checks on single queries
    if exact_label:
        exact_recall = recalls[exact_label]
        section.check(
            f"{ds.name}: exact store query returns the exact top 10",
            "smoke",
            exact_recall == 1.0,
            f"recall@10 = {exact_recall:.4f}",
        )
        xf = paired_ratio(samples[exact_label], floor)
        if ds.d == 1024 and ds.kind == "random" and not quick:
            section.check(
                f"{ds.name}: exact query <= 1.1x floor",
                "target",
                xf <= 1.1,
                f"{xf:.2f}x floor ({ms(median(samples[exact_label]))} ms vs "
                f"{ms(median(floor))} ms)",
            )
        f16 = next((c for c in contenders if c.label.startswith("LocalVectorStore float16")), None)
        if f16 is not None:
            r = paired_ratio(samples[f16.label], samples[exact_label])
            ok = r <= 0.75 and recalls[f16.label] >= 0.999
            section.check(
                f"{ds.name}: float16 <= 0.75x float32 time at 0.5x memory, recall@10 >= 0.999",
                "target",
                ok,
                f"{r:.2f}x float32 time, recall@10 {recalls[f16.label]:.4f}, "
                f"memory {f16.nbytes / x.nbytes:.2f}x",
            )
        if SCAN_COPY in recalls:
            r = paired_ratio(samples[SCAN_COPY], samples[exact_label])
            section.check(
                f"{ds.name}: the bfloat16 scan copy returns the exact top 10",
                "smoke",
                recalls[SCAN_COPY] == 1.0,
                f"recall@10 = {recalls[SCAN_COPY]:.4f}, {r:.2f}x the float32 time at 1.5x memory",
            )
        speeds: dict[str, float] = {}
        for c in contenders:
            if c.kind != "fast" or c.label.startswith("LocalVectorStore float16"):
                continue
            speeds[c.label] = paired_ratio(samples[exact_label], samples[c.label])
            result["contenders"][c.label]["speedup_vs_exact"] = speeds[c.label]
        for kind, need in (("funnel", 3.0), ("HNSW", 20.0)):
            rows = [label for label in speeds if kind in label]
            if ds.kind != "structured" or not rows:
                continue
            # The fastest setting that reaches the recall bar (else the most accurate one).
            good = [label for label in rows if recalls[label] >= 0.99]
            best = (
                max(good, key=lambda label: speeds[label])
                if good
                else max(rows, key=lambda label: recalls[label])
            )
            section.check(
                f"{ds.name}: {kind} >= {need:.0f}x faster than exact at recall@10 >= 0.99",
                "target",
                speeds[best] >= need and recalls[best] >= 0.99,
                f"{best}: {speeds[best]:.1f}x faster, recall@10 {recalls[best]:.4f}",
            )
    faiss_c = next((c for c in contenders if c.label.startswith("faiss IndexFlatIP")), None)
    if faiss_c is not None:
        section.check(
            f"{ds.name}: faiss exact baseline agrees with numpy",
            "smoke",
            recalls[faiss_c.label] >= 0.999,
            f"recall@10 = {recalls[faiss_c.label]:.4f} (a lower value means a broken BLAS kernel)",
        )


def _time_batches(job: _Run) -> None:
    """Time batches of queries (`query_many`)."""
    ds = job.ds
    plan = job.plan
    section = job.section
    x = job.x
    queries = job.queries
    ones = np.ones(job.ds.d, dtype=np.float32)
    contenders = job.contenders
    result = job.result
    # ---- batches of 32
    if ds.batch:
        qb = queries[:BATCH] if queries.shape[0] >= BATCH else np.resize(queries, (BATCH, ds.d))
        bfns: dict[str, Callable[[], object]] = {"floor: X @ ones": lambda: x @ ones}
        for c in contenders:
            if c.batch is not None:
                bfns[c.label] = (lambda f: lambda: f(qb))(c.batch)
        log.info("search: %s: timing batches of %d", ds.name, BATCH)
        bs = timed(bfns, repeats=plan.repeats, sample_seconds=plan.sample_seconds)

        btable = Table(
            f"{ds.name}: batch of {BATCH} queries (`query_many`), top {K}",
            ["contender", "ms per query", "x floor (per batch)", "x numpy"],
            note="The floor streams the matrix once per batch.",
        )
        bfloor = bs["floor: X @ ones"]
        btable.rows.append(["floor: X @ ones", ms(median(bfloor) / BATCH), "1.00x", ""])
        bbase = bs[contenders[0].label]
        result["batch"] = {}
        for c in contenders:
            if c.label not in bs:
                continue
            s = bs[c.label]
            btable.rows.append(
                [
                    c.label,
                    ms(median(s) / BATCH),
                    ratio(paired_ratio(s, bfloor)),
                    ratio(paired_ratio(s, bbase)),
                ]
            )
            result["batch"][c.label] = {"ms_per_query": median(s) / BATCH * 1e3}
        section.tables.append(btable)
        _check_batches(job, qb, bs)


def _check_batches(job: _Run, qb: npt.NDArray[np.float32], bs: dict[str, list[float]]) -> None:
    """The checks and targets of batches of queries (``qb`` timed as ``bs``)."""
    ds, section, x, contenders = job.ds, job.section, job.x, job.contenders
    quick, exact_label = job.quick, job.exact_label

    def batch_of(label: str) -> list[list[int]]:
        """The answer of contender ``label`` to the timed batch."""
        found = next(c for c in contenders if c.label == label).batch
        assert found is not None
        return found(qb)

    if exact_label and exact_label in bs:
        per_query = median(bs[exact_label]) / BATCH * 1e3
        found = batch_of(exact_label)
        batch_truth = exact_top(x, qb, K)
        section.check(
            f"{ds.name}: query_many returns the exact top 10",
            "smoke",
            recall_at(found, batch_truth, K) == 1.0,
            f"recall@10 = {recall_at(found, batch_truth, K):.4f}",
        )
        scan = median(bs[SCAN_COPY]) / BATCH * 1e3 if SCAN_COPY in bs else None
        if ds.n == 100_000 and ds.d == 1024 and ds.kind == "random" and not quick:
            # Both answer with the float32 vectors' exact top 10; the copy costs memory.
            fastest = per_query if scan is None else min(per_query, scan)
            section.check(
                f"{ds.name}: batch of {BATCH} <= 1.6 ms per query",
                "target",
                fastest <= 1.6,
                f"float32 store {per_query:.2f} ms per query"
                + (
                    ""
                    if scan is None
                    else f"; with a bfloat16 scan copy {scan:.2f} ms (1.5x memory)"
                ),
            )
        if scan is not None:
            found_b = batch_of(SCAN_COPY)
            section.check(
                f"{ds.name}: the bfloat16 scan copy's query_many returns the exact top 10",
                "smoke",
                recall_at(found_b, batch_truth, K) == 1.0,
                f"recall@10 = {recall_at(found_b, batch_truth, K):.4f}, {scan:.2f} ms per query",
            )
    f16_batch = next((label for label in bs if label.startswith("LocalVectorStore float16")), None)
    if f16_batch is not None:
        found16 = batch_of(f16_batch)
        r16 = recall_at(found16, exact_top(x, qb, K), K)
        section.check(
            f"{ds.name}: float16 query_many at 0.5x memory, recall@10 >= 0.999",
            "smoke",
            r16 >= 0.999,
            f"{median(bs[f16_batch]) / BATCH * 1e3:.2f} ms per query, recall@10 {r16:.4f}",
        )


def scaled(plan: Plan, scale: float) -> Plan:
    """``plan`` with every data set's row count multiplied by ``scale`` (at least 1,000 rows)."""
    if scale == 1.0:
        return plan
    sets = tuple(dataclasses.replace(ds, n=max(1000, round(ds.n * scale))) for ds in plan.sets)
    return dataclasses.replace(plan, sets=sets)


def run(
    *,
    quick: bool,
    scale: float = 1.0,
    sets: list[str] | None = None,
    filtered_only: bool = False,
) -> Section:
    """Run the search benchmark and return its report section: every data set of the plan,
    or those named in ``sets`` (e.g. ``"random 100k x 256"``), all queries or (``filtered_only``)
    the filtered ones."""
    plan = scaled(QUICK if quick else FULL, scale)
    if sets:
        chosen = tuple(ds for ds in plan.sets if ds.name in sets)
        unknown = sorted(set(sets) - {ds.name for ds in chosen})
        if unknown:
            names = ", ".join(repr(ds.name) for ds in plan.sets)
            raise SystemExit(f"unknown search data set {unknown[0]!r}; this plan has {names}")
        plan = dataclasses.replace(plan, sets=chosen)
    section = Section(
        "Search",
        quick=quick,
        intro=(
            "Top-10 cosine queries over unit vectors. Every contender answers the same queries in "
            "the same process; contenders are interleaved in each repeat (repeat counts under "
            "each table). `random` = i.i.d. Gaussian directions (the worst case for "
            "Matryoshka truncation); `structured` = 200 clusters with per-dimension scale "
            "1/sqrt(i+1), so the leading dimensions carry most of the variance (as in a "
            "Matryoshka-trained embedding)."
        ),
    )
    build_tables: list[list[str]] = []
    for ds in plan.sets:
        run_dataset(ds, plan, section, quick, filtered_only=filtered_only)
        gc.collect()  # free the data set (1M x 1024 float32 is 4 GB) before the next
    for name, builds in section.data.get("build_seconds", {}).items():
        for what, secs in builds.items():
            mem = section.data.get("hnsw_memory", {}).get(name, {}) if "HNSW" in what else {}
            build_tables.append(
                [name, what, f"{secs:.1f} s", mib(mem["rss_growth_bytes"]) if mem else ""]
            )
    if build_tables:
        section.tables.append(
            Table(
                "Build times", ["data set", "what", "seconds", "memory (RSS growth)"], build_tables
            )
        )
    if not filtered_only:
        section.notes.extend(notes(section.data))
    return section
