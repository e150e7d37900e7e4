"""The live AWS suite's gate and wiring, run offline in subprocesses.

* Not enabled (CI, ``make test``): ``make integration`` exits 0 at once, every test skipped, and
  says in one line how to run it; the default test run deselects the suite.
* Enabled without credentials: stops before creating anything, with a clear message.
* A rehearsal (the same suite against FakeS3Vectors, FakeBedrock(Jobs) and moto) passes, stays
  within the cost plan each module declares, creates exactly its two buckets and removes them,
  and writes the report; a small budget skips the larger media tests with a message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What `make integration` runs (see the Makefile).
LIVE = ["tests/integration", "-m", "integration", "-rfE", "-p", "no:cacheprovider"]


def run_pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CROSSMODAL_"))}
    clean.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        **(env or {}),
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_not_enabled_every_test_skips_with_one_line_and_exit_0() -> None:
    started = time.monotonic()
    done = run_pytest(*LIVE, "--force-enable-socket")
    assert done.returncode == 0, done.stdout[-3000:]
    lines = done.stdout.splitlines()
    assert [line for line in lines if "not enabled" in line] == [
        line for line in lines if line.startswith("live AWS suite not enabled: run ")
    ]
    assert len([line for line in lines if "not enabled" in line]) == 1
    assert "CROSSMODAL_LIVE_AWS=1" in done.stdout and "docs/live-aws.md" in done.stdout
    assert " passed" not in lines[-1] and " skipped in " in lines[-1], lines[-1]
    assert time.monotonic() - started < 60


def test_the_default_run_deselects_the_suite() -> None:
    done = run_pytest("tests/integration", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert done.returncode == 5, done.stdout[-2000:]  # everything deselected: nothing to run
    assert "deselected" in done.stdout and "::" not in done.stdout


def test_enabled_without_credentials_stops_before_creating_anything(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # Sockets stay restricted to localhost (pyproject): a request to AWS would fail differently.
    done = run_pytest(
        *LIVE,
        "--live-report",
        str(report),
        env={"CROSSMODAL_LIVE_AWS": "1", "AWS_REGION": "us-east-1"},
    )
    assert done.returncode == 4, done.stdout[-3000:]
    assert "no AWS credentials were found" in done.stdout + done.stderr
    assert "Nothing was created." in done.stdout + done.stderr
    assert " passed" not in done.stdout and not report.exists()


def _rehearsal(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    report = tmp_path / "report.json"
    done = run_pytest(
        *LIVE, "--live-report", str(report), *args, env={"CROSSMODAL_LIVE_AWS": "rehearsal"}
    )
    return done, json.loads(report.read_text()) if report.exists() else None


def test_a_rehearsal_passes_within_its_plan_and_removes_what_it_created(tmp_path: Path) -> None:
    done, report = _rehearsal(tmp_path, "--live-budget-usd", "1")

    assert done.returncode == 0, done.stdout[-5000:]
    assert "cost bound $" in done.stdout and "creates: S3 vector bucket cmx-live-" in done.stdout
    assert set(report["tests"].values()) == {"passed"}, report["tests"]
    assert len(report["tests"]) >= 60
    # Each module stayed within the usage it declares, so the printed bound is a bound.
    assert report["measured"]["over_plan"] == {}
    assert report["measured"]["bound_usd"] <= report["plan"]["total_bound_usd"]
    assert set(report["plan"]["modules"]) == {
        "lifecycle",
        *(
            f"tests.integration.test_live_{m}"
            for m in ("async", "behaviours", "contract", "e2e", "nova")
        ),
    }
    # It created its two buckets and deleted them, with everything in them.
    run_id = report["run_id"]
    assert report["created"] == [
        f"s3vectors:bucket/cmx-live-{run_id}",
        f"s3:cmx-live-123456789012-{run_id}",
    ]
    assert report["cleanup"]["errors"] == []
    deleted = report["cleanup"]["deleted"]
    assert {f"s3vectors:bucket/cmx-live-{run_id}", f"s3:cmx-live-123456789012-{run_id}"} <= set(
        deleted
    )
    # The pinned behaviours delete their own indexes; the contract's are left to the cleanup.
    assert any("/index/contract-" in d for d in deleted)
    assert not any("/index/pin-" in d for d in deleted)
    assert any(d.startswith(f"s3://cmx-live-123456789012-{run_id}/async/output/") for d in deleted)
    # The report carries what the issue asks for.
    assert report["mode"] == "rehearsal" and report["region"] == "us-east-1"
    assert {"boto3", "botocore", "crossmodal-search"} <= set(report["versions"])
    assert report["behaviours_summary"] == {"agree": 18, "differ": []}
    first = report["behaviours"][0]
    assert {"assumption", "assumed", "answered", "ours", "agrees", "where", "index_mode"} <= set(
        first
    )
    assert set(first["ours"]) == {"FakeS3Vectors", "LocalVectorStore"}
    assert len(report["nova"]["norms"]) == 16 and len(report["nova"]["truncation_cosine"]) == 12
    assert report["async_job"]["video"]["status"] == "SUCCESS"
    assert report["e2e"]["sample_catalog"]["overall"]["recall@10"] > 0
    assert "live suite results (rehearsal" in done.stdout and "recall@10=" in done.stdout


def test_the_budget_skips_the_larger_media_tests_with_a_message(tmp_path: Path) -> None:
    done, report = _rehearsal(
        tmp_path, "-k", "async or e2e or ne_on_missing", "--live-budget-usd", "0.006"
    )

    assert done.returncode == 0, done.stdout[-5000:]
    assert report["skipped_for_budget"] == [
        "tests.integration.test_live_async",
        "tests.integration.test_live_e2e",
    ]
    outcomes = {k.split("::")[0].rsplit("/", 1)[-1]: v for k, v in report["tests"].items()}
    assert outcomes == {
        "test_live_async.py": "skipped",
        "test_live_behaviours.py": "passed",
        "test_live_e2e.py": "skipped",
    }
    assert "skipped for budget: over the live budget: test_live_async needs" in done.stdout
    assert "rerun with --live-budget-usd=" in done.stdout
