"""The benchmark harness: quick mode runs and writes its report; the baselines are faithful."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from benchmarks import ingest, run
from benchmarks._harness import Section, interleaved, machine_info, paired_ratio

from crossmodal_search.testing import FakeBedrock, FakeS3Vectors


def test_quick_mode_runs_and_writes_markdown_and_json(tmp_path: Path) -> None:
    args = ["--quick", "--scale", "0.1", "--ingest-repeats", "1", "--output-dir", str(tmp_path)]
    code = run.main(args)
    assert code == 0
    md = (tmp_path / "benchmarks.md").read_text()
    for heading in ("## Machine", "## Ingestion", "## Search", "BLAS kernels running"):
        assert heading in md
    assert "notebook (sequential, 30/put)" in md
    assert "LocalVectorStore.query (exact)" in md
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert data["mode"] == "quick"
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["memory_gib"] > 0
    assert machine["versions"]["numpy"]
    assert machine["blas"]["numpy_build"]["name"]
    checks = [c for s in data["sections"] for c in s["checks"]]
    assert checks and all(c["passed"] for c in checks if c["kind"] == "smoke")
    # quick mode never judges timing targets
    assert not [c for c in checks if c["kind"] == "target"]
    names = {c["name"] for c in checks}
    assert "ingest (throttled): CrossmodalSearcher.index (defaults) loses no item" in names
    ingest_data = next(s for s in data["sections"] if s["title"] == "Ingestion")["data"]
    ours = ingest_data["throttled"]["CrossmodalSearcher.index (defaults)"]
    assert [r["lost"] for r in ours["runs"]] == [0]


def test_a_failed_smoke_check_makes_the_run_fail(tmp_path: Path) -> None:
    section = Section("Search")
    section.check("exact path is exact", "smoke", False, "recall@10 = 0.9")
    section.check("fast enough", "target", False, "2x floor")
    info = machine_info()
    assert run.finish([section], info, tmp_path, quick=True) == 1
    assert "**FAIL**: exact path is exact" in (tmp_path / "benchmarks.md").read_text()
    ok = Section("Search")
    ok.check("fast enough", "target", False, "2x floor")  # a missed target never fails the run
    assert run.finish([ok], info, tmp_path, quick=False) == 0


def test_quick_sections_drop_timing_targets() -> None:
    section = Section("Search", quick=True)
    section.check("fast", "target", False, "slow")
    section.check("exact", "smoke", True, "ok")
    assert [c.name for c in section.checks] == ["exact"]


def test_interleaved_rotates_order_and_pairs_samples() -> None:
    calls: list[str] = []
    samples = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=0
    )
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(len(v) == 4 for v in samples.values())
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 2.0]) == 2.0


def _fakes(latency: float = 0.0) -> tuple[FakeBedrock, FakeS3Vectors]:
    return (
        FakeBedrock(embedder=cast(Any, ingest._HashEmbedder()), latency=latency),
        FakeS3Vectors(),
    )


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> list[ingest.CatalogItem]:
    return ingest.write_catalog(tmp_path_factory.mktemp("catalog"), 65)


def test_notebook_pattern_is_sequential_with_30_vector_puts(
    catalog: list[ingest.CatalogItem],
) -> None:
    bedrock, s3 = _fakes()
    assert ingest.notebook_pattern(catalog, bedrock, s3) == set()
    assert bedrock.calls == 2 * len(catalog)
    assert bedrock.max_in_flight == 1
    sizes = [len(r.params["vectors"]) for r in s3.operation_requests("put_vectors")]
    assert sizes == [30, 30, 5]
    assert s3.vector_count(ingest.BUCKET, "notebook") == len(catalog)


def test_cli_pattern_uses_4_workers_and_puts_per_chunk_of_500(
    catalog: list[ingest.CatalogItem],
) -> None:
    bedrock, s3 = _fakes(latency=0.002)
    assert ingest.cli_pattern(catalog, bedrock, s3) == set()
    assert bedrock.calls == 2 * len(catalog)
    assert 1 < bedrock.max_in_flight <= 4
    sizes = [len(r.params["vectors"]) for r in s3.operation_requests("put_vectors")]
    assert sizes == [2 * len(catalog)]  # 130 inputs fit one chunk of 500
    assert s3.vector_count(ingest.BUCKET, "cli") == 2 * len(catalog)


def test_lost_items_are_counted_from_the_index(catalog: list[ingest.CatalogItem]) -> None:
    plan = ingest.Plan(8, 0.0, 0.0, 1, 8, 1000.0, 1000.0)
    outcome = ingest.run_one("notebook (sequential, 30/put)", catalog[:8], plan, throttled=False)
    assert outcome.lost == 0 and outcome.vectors == 8
    assert outcome.bedrock_calls == 16 and outcome.s3_puts == 1
