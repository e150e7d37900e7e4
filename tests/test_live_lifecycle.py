"""The live suite's resource lifecycle and cost model, proven offline on FakeS3Vectors and moto.

A fake run must create exactly what it says it will, tagged, and remove exactly that; the
sweeper must find and remove what a killed run left behind and nothing else; the meter must count
what the clients did, in the units the cost bound prices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from crossmodal_search.testing import FakeS3Vectors
from tests.integration import sweep as sweep_cli
from tests.integration.lifecycle import (
    NAME_PREFIX,
    PRICES,
    TAG_KEY,
    LiveRun,
    Usage,
    UsageMeter,
    find_leftovers,
    new_run_id,
    sweep,
)

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"


@dataclass
class Account:
    """An AWS account made of fakes: S3 Vectors (FakeS3Vectors) and S3 (moto)."""

    fake: FakeS3Vectors
    s3vectors: Any
    s3: Any

    def vector_buckets(self) -> list[str]:
        return sorted(
            b["vectorBucketName"] for b in self.s3vectors.list_vector_buckets()["vectorBuckets"]
        )

    def s3_buckets(self) -> list[str]:
        return sorted(b["Name"] for b in self.s3.list_buckets()["Buckets"])

    def run(self, *, run_id: str | None = None) -> LiveRun:
        return LiveRun(
            self.s3vectors, self.s3, account_id=ACCOUNT, region="us-east-1", run_id=run_id
        )


@pytest.fixture
def account(fake_credentials: None) -> Iterator[Account]:
    with mock_aws():
        fake = FakeS3Vectors(account_id=ACCOUNT)
        yield Account(fake, fake.client(), boto3.client("s3", region_name="us-east-1"))


def fill(account: Account, run: LiveRun) -> None:
    """What the tests do inside a run: indexes with vectors, media objects."""
    for name in ("contract-0", "pin-empty-filter"):
        account.s3vectors.create_index(
            vectorBucketName=run.vector_bucket,
            indexName=name,
            dataType="float32",
            dimension=4,
            distanceMetric="cosine",
        )
        account.s3vectors.put_vectors(
            vectorBucketName=run.vector_bucket,
            indexName=name,
            vectors=[{"key": "a", "data": {"float32": [1.0, 0.0, 0.0, 0.0]}}],
        )
    for key in ("media/clip.wav", "media/clip.mov", "async/abc123/manifest.json"):
        account.s3.put_object(Bucket=run.media_bucket, Key=key, Body=b"x")


def test_a_run_creates_exactly_what_it_describes_tagged_and_removes_exactly_that(
    account: Account,
) -> None:
    # Resources that are not the suite's: they must survive.
    account.s3vectors.create_vector_bucket(vectorBucketName="shop-vectors")
    account.s3.create_bucket(Bucket="shop-media")
    run = account.run()

    described = run.describe()
    run.create()
    fill(account, run)

    assert len(described) == 2
    assert run.vector_bucket in described[0] and run.media_bucket in described[1]
    assert run.created == [f"s3vectors:bucket/{run.vector_bucket}", f"s3:{run.media_bucket}"]
    assert account.vector_buckets() == sorted(["shop-vectors", run.vector_bucket])
    assert account.s3_buckets() == sorted(["shop-media", run.media_bucket])
    arn = account.s3vectors.get_vector_bucket(vectorBucketName=run.vector_bucket)["vectorBucket"][
        "vectorBucketArn"
    ]
    assert account.s3vectors.list_tags_for_resource(resourceArn=arn)["tags"] == {
        TAG_KEY: run.run_id
    }
    assert account.s3.get_bucket_tagging(Bucket=run.media_bucket)["TagSet"] == [
        {"Key": TAG_KEY, "Value": run.run_id}
    ]
    assert run.vector_bucket.startswith(NAME_PREFIX) and run.media_bucket.startswith(NAME_PREFIX)
    assert ACCOUNT in run.media_bucket  # S3 bucket names are global

    report = run.cleanup()

    assert report.errors == []
    assert sorted(report.deleted) == sorted(
        [
            f"s3vectors:bucket/{run.vector_bucket}/index/contract-0",
            f"s3vectors:bucket/{run.vector_bucket}/index/pin-empty-filter",
            f"s3vectors:bucket/{run.vector_bucket}",
            f"s3://{run.media_bucket}/media/clip.wav",
            f"s3://{run.media_bucket}/media/clip.mov",
            f"s3://{run.media_bucket}/async/abc123/manifest.json",
            f"s3:{run.media_bucket}",
        ]
    )
    assert account.vector_buckets() == ["shop-vectors"]
    assert account.s3_buckets() == ["shop-media"]
    # Idempotent: a second cleanup (atexit after the finalizer) does nothing.
    assert run.cleanup().deleted == []


def test_cleanup_after_a_failed_create_removes_what_exists(account: Account) -> None:
    run = account.run()
    account.fake.fail_next("CreateVectorBucket", "AccessDeniedException")
    with pytest.raises(Exception, match="AccessDenied"):
        run.create()

    report = run.cleanup()

    assert run.created == []
    assert report.errors == [] and report.deleted == []
    assert account.vector_buckets() == [] and account.s3_buckets() == []


def test_the_sweeper_removes_an_interrupted_runs_leftovers_and_nothing_else(
    account: Account,
) -> None:
    killed = account.run()
    killed.create()
    fill(account, killed)  # ... and the process died here: no cleanup
    in_progress = account.run()
    in_progress.create()
    # Named like the suite's, but not tagged by it: someone else's, or made by hand.
    account.s3vectors.create_vector_bucket(vectorBucketName=f"{NAME_PREFIX}handmade")
    account.s3.create_bucket(Bucket=f"{NAME_PREFIX}handmade")
    account.s3vectors.create_vector_bucket(vectorBucketName="shop-vectors", tags={TAG_KEY: "x"})
    later = datetime.now(timezone.utc) + timedelta(minutes=90)

    found = find_leftovers(
        account.s3vectors,
        account.s3,
        older_than=timedelta(minutes=60),
        region="us-east-1",
        now=later,
    )
    removable = sorted((f.kind, f.name) for f in found if f.removable)
    # Both runs are 90 minutes old at `later`; only the sweeper's age rule separates them, so
    # judge the in-progress run at its real age too.
    assert removable == sorted(
        [
            ("s3vectors", killed.vector_bucket),
            ("s3vectors", in_progress.vector_bucket),
            ("s3", killed.media_bucket),
            ("s3", in_progress.media_bucket),
        ]
    )
    kept = sorted((f.kind, f.name, f.reason) for f in found if not f.removable)
    not_ours = f"no {TAG_KEY} tag: not ours"
    assert kept == [
        ("s3", f"{NAME_PREFIX}handmade", not_ours),
        ("s3vectors", f"{NAME_PREFIX}handmade", not_ours),
    ]
    assert "shop-vectors" not in {f.name for f in found}  # tagged, but not the suite's name

    young = find_leftovers(
        account.s3vectors, account.s3, older_than=timedelta(minutes=60), region="us-east-1"
    )
    assert not any(f.removable for f in young), "a run in progress must never be swept"
    assert all("too young" in f.reason for f in young if f.run_id is not None)

    _, report = sweep(
        account.s3vectors,
        account.s3,
        older_than=timedelta(minutes=60),
        region="us-east-1",
        now=later,
    )

    assert report.errors == []
    assert f"s3vectors:bucket/{killed.vector_bucket}/index/contract-0" in report.deleted
    assert f"s3://{killed.media_bucket}/media/clip.mov" in report.deleted
    assert account.vector_buckets() == sorted([f"{NAME_PREFIX}handmade", "shop-vectors"])
    assert account.s3_buckets() == [f"{NAME_PREFIX}handmade"]


def test_the_sweeper_command_line(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    run = account.run(run_id="20200101-000000-abcdef")
    run.create()
    account.s3vectors.create_vector_bucket(vectorBucketName=f"{NAME_PREFIX}handmade")
    clients = (account.s3vectors, account.s3)

    assert sweep_cli.main(["--dry-run", "--older-than-minutes", "0"], clients=clients) == 0
    out = capsys.readouterr().out
    assert f"would delete s3vectors {run.vector_bucket}" in out
    assert f"keeping s3vectors {NAME_PREFIX}handmade: no {TAG_KEY} tag" in out
    assert run.vector_bucket in account.vector_buckets()

    assert sweep_cli.main(["--older-than-minutes", "0"], clients=clients) == 0
    assert "removed 2 leftover bucket(s)" in capsys.readouterr().out
    assert account.vector_buckets() == [f"{NAME_PREFIX}handmade"]


def test_sigterm_cleans_up_before_the_process_dies(tmp_path: Path) -> None:
    """A run killed with SIGTERM removes its buckets first, then dies of the signal."""
    log = tmp_path / "cleanup.json"
    script = textwrap.dedent(
        f"""
        import json, os, signal, time
        import boto3
        from moto import mock_aws
        from crossmodal_search.testing import FakeS3Vectors
        from tests.integration.lifecycle import LiveRun

        class Logged(LiveRun):
            def cleanup(self):
                report = super().cleanup()
                left = [b["vectorBucketName"]
                        for b in self.s3vectors.list_vector_buckets()["vectorBuckets"]]
                left += [b["Name"] for b in self.s3.list_buckets()["Buckets"]]
                with open({str(log)!r}, "a") as f:
                    f.write(json.dumps({{"deleted": report.deleted, "left": left}}) + "\\n")
                return report

        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            run = Logged(FakeS3Vectors().client(), s3, account_id="123456789012",
                         region="us-east-1")
            run.install_interrupt_handlers()
            run.create()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
    )
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, timeout=120, capture_output=True
    )
    assert done.returncode == -signal.SIGTERM, done.stderr.decode()[-2000:]
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["left"] == []
    assert len([d for d in entry["deleted"] if ":" in d]) == 2


def test_run_ids_are_sortable_and_valid_in_bucket_names() -> None:
    a = new_run_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert a.startswith("20260102-030405-") and len(a) == 22
    with pytest.raises(ValueError, match="run id"):
        LiveRun(Any, Any, account_id=ACCOUNT, region="us-east-1", run_id="Bad_ID")  # type: ignore[arg-type]


# -- cost model and meter --------------------------------------------------------------------------


def test_the_estimate_prices_each_unit() -> None:
    usage = Usage(
        nova_text_chars=10_000,
        nova_image_calls=10,
        nova_audio_seconds=10,
        nova_video_seconds=10,
        s3v_query_requests=1_000_000,
    )
    expected = (
        10 * PRICES.nova_text_per_1k_tokens
        + 10 * PRICES.nova_image
        + 10 * PRICES.nova_audio_per_second
        + 10 * PRICES.nova_video_per_second
        + PRICES.s3v_query_per_million
    )
    assert usage.estimate() == pytest.approx(expected)
    assert usage.bound() == pytest.approx(expected * PRICES.safety_factor)
    assert (usage + usage).estimate() == pytest.approx(2 * expected)
    assert usage.scaled(3).nova_image_calls == 30
    assert usage.over(usage.scaled(2)) == {}
    assert usage.scaled(2).over(usage) == {
        "nova_text_chars": (20_000, 10_000),
        "nova_image_calls": (20, 10),
        "nova_audio_seconds": (20, 10),
        "nova_video_seconds": (20, 10),
        "s3v_query_requests": (2_000_000, 1_000_000),
    }


def test_the_meter_counts_billable_requests_per_scope(account: Account) -> None:
    meter = UsageMeter()
    meter.attach(account.s3vectors)
    meter.attach(account.s3)
    run = account.run()
    with meter.scope("lifecycle"):
        run.create()
    with meter.scope("tests"):
        fill(account, run)
        account.s3vectors.query_vectors(
            vectorBucketName=run.vector_bucket,
            indexName="contract-0",
            topK=1,
            queryVector={"float32": [1.0, 0.0, 0.0, 0.0]},
        )
        account.fake.fail_next("QueryVectors", "ValidationException")
        with pytest.raises(Exception, match="Validation"):
            account.s3vectors.query_vectors(
                vectorBucketName=run.vector_bucket,
                indexName="contract-0",
                topK=1,
                queryVector={"float32": [1.0, 0.0, 0.0, 0.0]},
            )
        account.s3.get_object(Bucket=run.media_bucket, Key="media/clip.wav")

    assert meter.usage["lifecycle"] == Usage(s3v_other_requests=1, s3_put_requests=2)
    tests = meter.usage["tests"]
    assert tests.s3v_put_requests == 2 and tests.s3v_other_requests == 2
    assert tests.s3v_query_requests == 1  # the rejected query is not billed
    # A query processes (at most) what was put into its index: contract-0's one put.
    put_sizes = [r.size for r in account.fake.operation_requests("put_vectors")]
    assert tests.s3v_put_bytes == sum(put_sizes)
    assert tests.s3v_query_processed_bytes == put_sizes[0]
    assert tests.s3_put_requests == 3 and tests.s3_stored_bytes == 3 and tests.s3_get_requests == 1
    assert meter.total() == meter.usage["lifecycle"] + tests


# -- the generated media ---------------------------------------------------------------------------


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    out: dict[bytes, tuple[int, int]] = {}
    position, stop = start, len(data) if end is None else end
    while position < stop:
        size = int.from_bytes(data[position : position + 4], "big")
        out.setdefault(data[position + 4 : position + 8], (position + 8, position + size))
        position += size
    assert position == stop, "boxes must tile their parent exactly"
    return out


def test_generated_media_are_what_the_sdk_and_nova_expect() -> None:
    import io

    from PIL import Image

    from crossmodal_search.embeddings import prepare_audio, prepare_image, prepare_video
    from crossmodal_search.embeddings._media import wav_duration
    from tests.integration import media

    audio, seconds = media.wav(1.0)
    assert prepare_audio(audio).format == "wav" and wav_duration(audio) == seconds == 1.0
    assert prepare_image(media.png()).format == "png"

    movie, seconds = media.mov(3.0, fps=4)
    assert seconds == 3.0 and prepare_video(movie).format == "mov"
    top = _boxes(movie)
    assert list(top) == [b"ftyp", b"mdat", b"moov"]
    moov = _boxes(movie, *top[b"moov"])
    assert b"mvhd" in moov
    video = _boxes(movie, *_boxes(movie, *moov[b"trak"])[b"mdia"])  # the first track
    # Every frame the sample table points at is a JPEG Pillow decodes, inside mdat.
    stbl = _boxes(movie, *_boxes(movie, *video[b"minf"])[b"stbl"])
    sizes_at, _ = stbl[b"stsz"]
    count = int.from_bytes(movie[sizes_at + 8 : sizes_at + 12], "big")
    sizes = [
        int.from_bytes(movie[sizes_at + 12 + 4 * i : sizes_at + 16 + 4 * i], "big")
        for i in range(count)
    ]
    offsets_at, _ = stbl[b"stco"]
    offsets = [
        int.from_bytes(movie[offsets_at + 8 + 4 * i : offsets_at + 12 + 4 * i], "big")
        for i in range(count)
    ]
    assert count == 12
    mdat_start, mdat_end = top[b"mdat"]
    for offset, size in zip(offsets, sizes, strict=True):
        assert mdat_start <= offset and offset + size <= mdat_end
        with Image.open(io.BytesIO(movie[offset : offset + size])) as frame:
            assert frame.format == "JPEG" and frame.size == (128, 128)
