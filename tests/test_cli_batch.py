"""``crossmodal index --batch`` through the real entry point, against fakes at the HTTP boundary.

The CLI builds its AWS clients from boto3's default session (as ``boto3.client`` does);
``tests/cli_helpers.py`` puts the fakes behind it (moto for S3).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from crossmodal_search.cli import main
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import open_store
from crossmodal_search.testing import BatchJobScript
from tests.cli_helpers import AwsFakes, default_session_fakes

DIM = 256
BUCKET = "batch-work"
WORK = f"s3://{BUCKET}/crossmodal/"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
COLOURS = ["red", "blue", "green", "black", "white", "yellow"]
THINGS = ["dress", "kettle", "sneaker", "backpack", "lamp", "mug", "jacket"]


@pytest.fixture
def aws(fake_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFakes]:
    with default_session_fakes(monkeypatch, dimension=DIM, buckets=(BUCKET,)) as fakes:
        yield fakes


def write_catalog(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            colour, thing = COLOURS[i % len(COLOURS)], THINGS[(i // len(COLOURS)) % len(THINGS)]
            product = {
                "product_id": f"P{i:04d}",
                "text": f"{colour} {thing} number {i}",
                "metadata": {"color": colour},
            }
            f.write(json.dumps(product) + "\n")
    return path


def batch_args(store: str, *extra: str) -> list[str]:
    return [
        "--store",
        store,
        "--embedder",
        "nova",
        "--dimension",
        str(DIM),
        "--batch",
        "--batch-role-arn",
        ROLE,
        "--batch-s3-uri",
        WORK,
        "--batch-poll-interval",
        "0.001",
        *extra,
    ]


def test_batch_indexes_a_few_hundred_products_with_nothing_lost(
    aws: AwsFakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = write_catalog(tmp_path / "products.jsonl", 300)
    store = f"local:{tmp_path / 'vectors'}"

    assert main(["index", str(catalog), *batch_args(store)]) == 0

    out = capsys.readouterr().out
    assert "Amazon Nova" in out and f"batch inference: role {ROLE}" in out
    assert "indexed 300 products, 0 unchanged, 0 failed; 600 vectors written" in out
    assert "300 embedding calls" in out  # one batch record per text
    assert len(aws.jobs.batch_jobs) == 1
    (job,) = aws.jobs.batch_jobs.values()
    assert f"batch job: {job.arn}" in out
    assert job.request["roleArn"] == ROLE
    assert aws.jobs.calls["CreateModelInvocationJob"] == 1
    assert aws.bedrock.requests == []  # nothing embedded one call at a time
    inputs = aws.keys(BUCKET, "crossmodal/input/")
    assert len([k for k in inputs if k.endswith(".jsonl")]) == 1
    body = aws.s3.get_object(Bucket=BUCKET, Key=next(k for k in inputs if k.endswith(".jsonl")))
    assert len(body["Body"].read().splitlines()) == 300

    # every product landed, searchable with the synchronous embedder of the same model
    searcher = CrossmodalSearcher(
        NovaEmbeddings(client=aws.bedrock.client(), dimension=DIM),
        open_store(store, dimension=DIM),
    )
    with searcher:
        assert len(list(searcher.store.keys())) == 600
        for i in (0, 100, 299):
            hit = searcher.search(f"number {i}", search_mode="text", top_k=1)[0]
            assert hit.product_id == f"P{i:04d}"
            assert hit.metadata == {"color": COLOURS[i % len(COLOURS)]}

    # a rerun finds everything indexed: no job, no call
    assert main(["index", str(catalog), *batch_args(store)]) == 0
    assert "indexed 0 products, 300 unchanged, 0 failed" in capsys.readouterr().out
    assert len(aws.jobs.batch_jobs) == 1 and aws.jobs.calls["CreateModelInvocationJob"] == 1


def test_failed_batch_records_fail_their_products_and_a_rerun_retries_only_them(
    aws: AwsFakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = write_catalog(tmp_path / "products.jsonl", 150)
    store = f"local:{tmp_path / 'vectors'}"
    aws.jobs.script_batch(
        BatchJobScript(
            failed_records={"R0000000007": "Malformed input request"},
            missing_records={"R0000000042"},
        )
    )

    assert main(["index", str(catalog), *batch_args(store)]) == 1

    captured = capsys.readouterr()
    assert "indexed 148 products, 0 unchanged, 2 failed; 296 vectors written" in captured.out
    failed_lines = [line for line in captured.err.splitlines() if "failed P" in line]
    assert len(failed_lines) == 2
    assert any("Malformed input request" in line for line in failed_lines)
    assert any("MissingFromOutput" in line for line in failed_lines)
    # A refused record must be fixed; one left out of the output is retried by a rerun.
    assert "1 product must be fixed and 1 product met service errors" in captured.err

    # 2 records are below a batch job's minimum: the rerun embeds them synchronously
    assert main(["index", str(catalog), *batch_args(store)]) == 0
    assert "indexed 2 products, 148 unchanged, 0 failed" in capsys.readouterr().out
    assert len(aws.bedrock.requests) == 2 and len(aws.jobs.batch_jobs) == 1

    # --prune with --batch: the products dropped from the catalog leave the store
    smaller = write_catalog(tmp_path / "smaller.jsonl", 140)
    assert main(["index", str(smaller), *batch_args(store), "--prune"]) == 0
    out = capsys.readouterr().out
    assert "indexed 0 products, 140 unchanged, 0 failed" in out
    assert "20 stale vectors deleted" in out and "pruned 10 products" in out
    assert len(aws.bedrock.requests) == 2 and len(aws.jobs.batch_jobs) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch"], "--batch needs --batch-role-arn and --batch-s3-uri"),
        (["--batch", "--batch-role-arn", ROLE], "--batch needs --batch-s3-uri"),
        (["--batch-s3-uri", WORK], "--batch-s3-uri only apply with --batch"),
        (
            ["--batch", "--batch-role-arn", ROLE, "--batch-s3-uri", WORK, "--embedder", "offline"],
            "cannot use the offline embedder",
        ),
        (["--batch-poll-interval", "0"], "must be > 0"),
    ],
)
def test_batch_usage_errors_exit_2_before_anything_runs(
    aws: AwsFakes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    catalog = write_catalog(tmp_path / "products.jsonl", 3)
    with pytest.raises(SystemExit) as exc:
        main(["index", str(catalog), "--store", f"local:{tmp_path / 'v'}", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    assert aws.jobs.requests == [] and aws.bedrock.requests == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--batch-role-arn": "BedrockBatch"}, "role_arn must be an IAM role ARN"),
        ({"--batch-s3-uri": "batch-work/prefix"}, "work_s3_uri must be an s3://bucket/key URI"),
    ],
)
def test_bad_batch_settings_are_refused_before_any_call(
    aws: AwsFakes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    catalog = write_catalog(tmp_path / "products.jsonl", 3)
    argv = batch_args(f"local:{tmp_path / 'v'}")
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = value
    assert main(["index", str(catalog), *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    assert aws.jobs.requests == [] and aws.bedrock.requests == []
    assert aws.keys(BUCKET) == []


def test_batch_without_credentials_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    catalog = write_catalog(tmp_path / "products.jsonl", 3)
    argv = batch_args(f"local:{tmp_path / 'v'}")
    argv[argv.index("--embedder") + 1] = "auto"
    assert main(["index", str(catalog), *argv]) == 1
    assert "--batch runs on Amazon Bedrock and boto3 found no AWS credentials" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "v").exists()
