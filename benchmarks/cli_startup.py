"""CLI start-up: ``crossmodal --help``, ``crossmodal search --help`` and ``crossmodal search`` on
the demo store, each a fresh process, against ``python -c pass`` (the floor) in the same run.

Contenders are interleaved in every repeat; the table gives medians and median per-repeat
ratios to the floor. Targets (issue 16): ``--help`` <= 0.2 s, a search on the demo store
<= 0.4 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import Section, Table, median

HELP_TARGET = 0.2
SEARCH_TARGET = 0.4


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run(*, quick: bool) -> Section:
    """Time the commands (fewer repeats with ``quick``) and return the report section."""
    repeats = 3 if quick else 11
    cli = [sys.executable, "-m", "crossmodal_search.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    section = Section(
        "CLI start-up",
        quick=quick,
        intro="Wall time of a fresh process per command (imports included), the demo store "
        "made by `crossmodal demo --embedder offline`; `python -c pass` is the floor.",
    )
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        demo = Path(tmp) / "demo"
        subprocess.run(
            [*cli, "demo", "--dir", str(demo), "--embedder", "offline"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        store = f"local:{demo / 'store'}"
        commands = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "crossmodal --help": [*cli, "--help"],
            "crossmodal search --help": [*cli, "search", "--help"],
            "crossmodal search (demo store, offline)": [
                *cli,
                "search",
                "--store",
                store,
                "--embedder",
                "offline",
                "blue mug",
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, argv in commands.items():
                times[name].append(_timed(argv, env))
    floor = times["python -c pass (floor)"]
    table = Table(
        "Start-up of one command",
        ["command", "median s", "x floor"],
        note=f"Medians of {repeats} repeats, contenders interleaved.",
    )
    for name, values in times.items():
        x = median([a / b for a, b in zip(values, floor, strict=True)])
        table.rows.append([name, f"{median(values):.3f}", f"{x:.1f}x"])
    section.tables.append(table)
    section.data["seconds"] = times
    kind = "smoke" if quick else "target"
    help_s = median(times["crossmodal --help"])
    search_s = median(times["crossmodal search (demo store, offline)"])
    # Quick: loose bounds (shared cores), still far below what importing numpy+boto3 costs.
    section.check(
        f"cli: crossmodal --help <= {HELP_TARGET if not quick else 1.0:g} s",
        kind,
        help_s <= (HELP_TARGET if not quick else 1.0),
        f"{help_s:.3f} s (floor {median(floor):.3f} s)",
    )
    section.check(
        f"cli: crossmodal search on the demo store <= {SEARCH_TARGET:g} s",
        "target",
        search_s <= SEARCH_TARGET,
        f"{search_s:.3f} s (floor {median(floor):.3f} s)",
    )
    return section
