"""Timing, machine description and report model shared by the benchmarks.

Every figure is measured side by side in one run: contenders are interleaved within each repeat
(the order rotates between repeats so none is always first), and ratios are the median of the
per-repeat ratios, which cancels slow drifts of a shared, noisy machine.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import importlib
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Table:
    """A markdown table: ``headers`` and string ``rows``, with an optional note under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        lines = [f"#### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


@dataclass
class Check:
    """A pass/fail line. ``kind="smoke"`` fails the run; ``kind="target"`` is reported only."""

    name: str
    kind: str
    passed: bool
    detail: str


@dataclass
class Section:
    """One benchmark's output: prose, tables, checks and raw numbers for the JSON file."""

    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    #: Quick (smoke) runs skip timing targets: tiny sizes on a noisy machine say nothing.
    quick: bool = False

    def check(self, name: str, kind: str, passed: bool, detail: str) -> None:
        if kind == "target" and self.quick:
            return
        self.checks.append(Check(name, kind, bool(passed), detail))

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "tables": [asdict(t) for t in self.tables],
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
            "data": self.data,
        }


# --------------------------------------------------------------------------- timing


def interleaved(
    contenders: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    inner: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one sample per repeat, contenders interleaved.

    Each sample is the mean over ``inner`` back-to-back calls (for sub-millisecond calls).
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = contenders[name]
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return samples


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over repeats of ``a[i] / b[i]`` (both measured in the same repeat)."""
    return median([x / y for x, y in zip(a, b, strict=True) if y > 0])


def ms(seconds: float) -> str:
    value = seconds * 1e3
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def rss_bytes() -> int:
    """Resident set size of this process now (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


# --------------------------------------------------------------------------- machine


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _loaded_libraries(fragment: str) -> list[str]:
    paths: set[str] = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and fragment in parts[-1].lower():
                    paths.add(parts[-1])
    except OSError:
        return []
    return sorted(paths)


def _openblas_runtime(path: str) -> dict[str, Any]:
    """Ask a loaded OpenBLAS which kernel (core type) it dispatched to, and its threads."""
    info: dict[str, Any] = {"library": os.path.basename(path)}
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        info["error"] = str(exc)
        return info
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", "_64_", ""):
            try:
                corename = getattr(lib, f"{prefix}get_corename{suffix}")
                config = getattr(lib, f"{prefix}get_config{suffix}")
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            corename.restype = ctypes.c_char_p
            config.restype = ctypes.c_char_p
            threads.restype = ctypes.c_int
            info["corename"] = corename().decode()
            info["config"] = config().decode().strip()
            info["threads"] = int(threads())
            return info
    info["error"] = "no openblas_get_corename symbol"
    return info


def blas_info() -> dict[str, Any]:
    """The BLAS numpy was built with and the kernel each loaded OpenBLAS actually runs."""
    info: dict[str, Any] = {
        "env": {
            k: os.environ[k]
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OPENBLAS_NUM_THREADS",
                "OPENBLAS_THREAD_TIMEOUT",
                "OMP_NUM_THREADS",
                "OMP_WAIT_POLICY",
            )
            if k in os.environ
        }
    }
    try:
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        info["numpy_build"] = {
            k: blas.get(k) for k in ("name", "version", "openblas configuration")
        }
        info["numpy_simd"] = config.get("SIMD Extensions", {})
    except Exception as exc:  # pragma: no cover - older numpy
        info["numpy_build"] = {"error": repr(exc)}
    try:
        threadpoolctl: Any = importlib.import_module("threadpoolctl")
        info["threadpoolctl"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["runtime"] = [_openblas_runtime(p) for p in _loaded_libraries("openblas")]
        info["runtime_source"] = "ctypes openblas_get_corename (threadpoolctl not installed)"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU, Python, library versions, BLAS kernel, load and date of this run."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": round(_memory_bytes() / 2**30, 1),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {
            name: _version(name)
            for name in (
                "crossmodal-search",
                "numpy",
                "faiss-cpu",
                "hnswlib",
                "numkong",
                "boto3",
                "botocore",
                "pydantic",
                "pillow",
            )
        },
        "blas": blas_info(),
    }


def machine_markdown(info: Mapping[str, Any]) -> str:
    blas = info["blas"]
    kernels = [
        f"{entry.get('library')}: kernel **{entry.get('corename', '?')}**, "
        f"{entry.get('threads', '?')} threads"
        for entry in blas.get("runtime", [])
    ]
    kernels += [
        f"{entry.get('filename')}: {entry.get('internal_api')} {entry.get('version')}, "
        f"kernel **{entry.get('architecture')}**, {entry.get('num_threads')} threads"
        for entry in blas.get("threadpoolctl", [])
    ]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    env = blas.get("env") or {}
    lines = [
        f"- Date (UTC): {info['date_utc']}",
        f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['memory_gib']} GiB memory",
        f"- Load average at start: {', '.join(f'{x:.2f}' for x in info['loadavg_at_start'])}"
        + (
            f"; at end: {', '.join(f'{x:.2f}' for x in info['loadavg_at_end'])}"
            if "loadavg_at_end" in info
            else ""
        ),
        f"- Python {info['python']} on {info['platform']}",
        f"- Libraries: {versions}",
        f"- numpy BLAS (build): {blas.get('numpy_build', {}).get('name')} "
        f"{blas.get('numpy_build', {}).get('version')}",
        "- BLAS kernels running: " + ("; ".join(kernels) if kernels else "unknown"),
        "- BLAS environment: "
        + (", ".join(f"{k}={v}" for k, v in env.items()) if env else "none set")
        + (f" ({info['blas_env_note']})" if info.get("blas_env_note") else ""),
    ]
    return "\n".join(lines)
