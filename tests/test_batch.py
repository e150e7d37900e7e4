"""Bedrock batch inference: JSONL in S3 -> model invocation jobs -> vectors, nothing lost.

moto answers S3; ``FakeBedrockJobs`` answers create/get/stop model invocation job at botocore's
before-send boundary, reads the JSONL input from moto's S3 and writes ``<job id>/<input>.out``
and ``manifest.json.out`` as Bedrock does, with scripted failed and missing records.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from crossmodal_search.embeddings import OfflineEmbedder
from crossmodal_search.embeddings._batch import BatchEmbeddingJobs, BatchRequest
from crossmodal_search.errors import (
    ConfigurationError,
    EmbeddingJobError,
    InvalidInputError,
    JobTimeoutError,
)
from crossmodal_search.search import CrossmodalSearcher, Product, index_with_batch
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.testing import BatchJobScript, FakeBedrockJobs

DIM = 256
BUCKET = "batch-work"
WORK = f"s3://{BUCKET}/embeddings"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "orange", "purple"]
THINGS = ["dress", "kettle", "sneaker", "backpack", "lamp", "mug", "jacket", "chair"]


@dataclass
class FakeClock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    s3: Any
    fake: FakeBedrockJobs
    clock: FakeClock

    def jobs(self, **kwargs: Any) -> BatchEmbeddingJobs:
        args: dict[str, Any] = {
            "role_arn": ROLE,
            "work_s3_uri": WORK,
            "poll_interval": 30,
            "max_poll_interval": 300,
            "sleep": self.clock.sleep,
            "clock": self.clock,
            **kwargs,
        }
        return BatchEmbeddingJobs(self.fake.client("bedrock"), self.s3, **args)


@pytest.fixture
def env(fake_credentials: None) -> Iterator[Env]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        fake = FakeBedrockJobs(embedder=OfflineEmbedder(dimension=DIM), s3_client=s3)
        yield Env(s3, fake, FakeClock())


def catalog(n: int, image_dir: Path | None = None, every: int = 25) -> list[Product]:
    products = []
    for i in range(n):
        colour, thing = COLOURS[i % len(COLOURS)], THINGS[(i // len(COLOURS)) % len(THINGS)]
        image = None
        if image_dir is not None and i % every == 0:
            path = image_dir / f"p{i}.png"
            img = Image.new("RGB", (16, 16), colour)
            img.putpixel((0, 0), (i % 256, i // 256, 7))  # every image distinct
            img.save(path)
            image = str(path)
        products.append(
            Product(
                product_id=f"P{i:05d}",
                text=f"{colour} {thing} model {i}",
                image=image,
                metadata={"colour": colour},
            )
        )
    return products


def text_requests(n: int) -> list[BatchRequest]:
    return [BatchRequest.text(f"t-{i}", f"text number {i}", dimension=DIM) for i in range(n)]


# --- the "done when": several thousand products, nothing lost -----------------------


def test_three_thousand_products_through_batch_with_nothing_lost(env: Env, tmp_path: Path) -> None:
    products = catalog(3000, tmp_path)
    with_image = sum(p.image is not None for p in products)
    store = LocalVectorStore(dimension=DIM)
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), store)
    jobs = env.jobs(max_records_per_job=1000)

    report = index_with_batch(searcher, products, jobs=jobs)

    assert report.failed == []
    assert report.indexed == 3000
    assert report.embed_calls == 3000 + with_image  # one batch record per text and image
    # text + combined for every product, image for those that have one
    assert report.vectors_written == 2 * 3000 + with_image
    assert len(store) == 2 * 3000 + with_image
    assert env.fake.calls["CreateModelInvocationJob"] == 4  # 3,120 records, <= 1,000 per job
    for job in env.fake.batch_jobs.values():
        assert job.status == "Completed"
        assert job.counts["totalRecordCount"] == 780

    # Every vector landed under the right product: batch vectors equal direct embeddings.
    offline = OfflineEmbedder(dimension=DIM)
    got = store.get([f"text-P{i:05d}" for i in (0, 1, 1234, 2999)])
    for record in got.records:
        pid = str(record.metadata["product_id"])
        expected = offline.embed_text(next(p.text for p in products if p.product_id == pid))
        np.testing.assert_allclose(record.vector, expected / np.linalg.norm(expected), atol=1e-5)
    hits = searcher.search(products[1234].text, top_k=1)  # "green sneaker model 1234"
    assert hits[0].product_id == "P01234"

    # Resumable: a rerun finds everything unchanged and submits nothing.
    again = index_with_batch(searcher, products, jobs=jobs)
    assert (again.skipped_unchanged, again.indexed, again.embed_calls) == (3000, 0, 0)
    assert env.fake.calls["CreateModelInvocationJob"] == 4
    # ... and the synchronous path agrees that the batch vectors are current.
    sync = searcher.index(products)
    assert (sync.skipped_unchanged, sync.embed_calls) == (3000, 0)


def test_failed_and_missing_records_are_reported_per_product(env: Env) -> None:
    products = catalog(400)
    store = LocalVectorStore(dimension=DIM)
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), store)
    env.fake.script_batch(
        BatchJobScript(
            failed_records={"R0000000007": "content filtered", "R0000000123": "bad request"},
            missing_records={"R0000000200"},
        )
    )
    report = index_with_batch(searcher, products, jobs=env.jobs())

    assert len(report.failed) == 3
    assert report.indexed == 397
    assert report.indexed + len(report.failed) == len(products)  # nothing silently dropped
    reasons = " | ".join(f.reason for f in report.failed)
    assert "content filtered" in reasons and "bad request" in reasons
    assert "MissingFromOutput" in reasons
    assert {f.kind for f in report.failed} == {"text"}
    failed_ids = {f.product_id for f in report.failed}
    assert all(store.get([f"text-{pid}"]).missing for pid in failed_ids)

    # A rerun embeds only the three that failed (its batch is below the job minimum, so it runs
    # synchronously) and completes the catalog.
    rerun = index_with_batch(searcher, products, jobs=env.jobs())
    assert (rerun.indexed, rerun.skipped_unchanged, rerun.failed) == (3, 397, [])
    assert env.fake.calls["CreateModelInvocationJob"] == 1


def test_record_errors_can_raise_with_every_failure_named(env: Env) -> None:
    env.fake.script_batch(BatchJobScript(failed_records={"R0000000042": "throttled"}))
    with pytest.raises(EmbeddingJobError) as info:
        env.jobs().run(text_requests(150), on_record_error="raise")
    assert info.value.failures == ("t-42 (record R0000000042): 400: throttled",)


def test_input_jsonl_layout_and_job_request(env: Env) -> None:
    jobs = env.jobs()
    (job,) = jobs.submit(text_requests(120))
    key = job.input_s3_uri.split("/", 3)[3]
    lines = env.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    assert len(lines) == 120
    first = json.loads(lines[0])
    assert re.fullmatch(r"[A-Za-z0-9]{11}", first["recordId"])
    assert first["modelInput"] == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": DIM,
            "text": {"truncationMode": "END", "value": "text number 0"},
        },
    }
    ((op, body),) = env.fake.requests
    assert op == "CreateModelInvocationJob"
    assert body["roleArn"] == ROLE and body["modelId"] == "amazon.nova-2-multimodal-embeddings-v1:0"
    assert body["inputDataConfig"] == {
        "s3InputDataConfig": {"s3Uri": job.input_s3_uri, "s3InputFormat": "JSONL"}
    }
    assert body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == f"{WORK}/output/"

    status = jobs.wait(job)
    assert status.status == "Completed" and status.success_records == 120
    polled = [s for (s,) in [(o,) for o, _ in env.fake.requests] if s == "GetModelInvocationJob"]
    assert len(polled) == 4  # Submitted, Validating, Scheduled, then Completed
    out = env.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"embeddings/output/{job.job_id}/")
    names = sorted(o["Key"].rsplit("/", 1)[1] for o in out["Contents"])
    assert names == sorted([key.rsplit("/", 1)[1] + ".out", "manifest.json.out"])
    result = jobs.fetch_results(job, status=status)
    assert result.ok and len(result.vectors) == 120
    assert result.vectors["t-5"].shape == (DIM,)


def test_image_records_are_sent_inline(env: Env) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    requests = [BatchRequest.image(f"i-{i}", buf.getvalue(), dimension=DIM) for i in range(100)]
    result = env.jobs().run(requests)
    assert result.ok and len(result.vectors) == 100
    red = OfflineEmbedder(dimension=DIM).embed_text("red")
    assert float(result.vectors["i-3"] @ red) > 0.3


def test_submitting_the_same_input_again_resumes_the_job(env: Env) -> None:
    requests = text_requests(150)
    (first,) = env.jobs().submit(requests)
    (second,) = env.jobs().submit(requests)  # a new process, same work prefix
    assert second.job_arn == first.job_arn
    assert env.fake.calls["CreateModelInvocationJob"] == 1
    result = env.jobs().run(requests)
    assert result.ok and len(result.vectors) == 150 and result.jobs == [first.job_arn]
    assert env.fake.calls["CreateModelInvocationJob"] == 1
    (fresh,) = env.jobs().submit(requests, resume=False)
    assert fresh.job_arn != first.job_arn


def test_a_failed_previous_job_is_submitted_again(env: Env) -> None:
    env.fake.script_batch(BatchJobScript(fail_job="role cannot read the input"))
    jobs = env.jobs()
    requests = text_requests(100)
    (job,) = jobs.submit(requests)
    with pytest.raises(EmbeddingJobError, match="role cannot read the input") as info:
        jobs.wait(job)
    assert info.value.status == "Failed"
    result = jobs.run(requests)
    assert result.ok and result.jobs != [job.job_arn]
    assert env.fake.calls["CreateModelInvocationJob"] == 2


def test_never_finishing_job_times_out(env: Env) -> None:
    env.fake.script_batch(BatchJobScript(never_finishes=True))
    jobs = env.jobs()
    (job,) = jobs.submit(text_requests(100))
    with pytest.raises(JobTimeoutError) as info:
        jobs.wait(job, timeout=3600)
    assert info.value.status == "InProgress"
    assert env.clock.now == pytest.approx(3600)
    assert max(env.clock.sleeps) <= 300
    with pytest.raises(EmbeddingJobError, match="InProgress"):
        jobs.fetch_results(job)


def test_stopped_job_keeps_what_it_wrote_and_reports_the_rest(env: Env) -> None:
    env.fake.script_batch(
        BatchJobScript(end_status="Stopped", missing_records={f"R{i:010d}" for i in range(60, 100)})
    )
    result = env.jobs().run(text_requests(100))
    assert len(result.vectors) == 60
    assert len(result.failures) == 40
    assert {f.code for f in result.failures} == {"MissingFromOutput"}
    assert all("Stopped" in f.message for f in result.failures)


def test_validation_before_any_call(env: Env) -> None:
    jobs = env.jobs()
    with pytest.raises(InvalidInputError, match="minimum"):
        jobs.submit(text_requests(99))
    duplicated = [*text_requests(150), BatchRequest.text("t-3", "again", dimension=DIM)]
    with pytest.raises(InvalidInputError, match="t-3"):
        jobs.submit(duplicated)
    with pytest.raises(InvalidInputError):
        BatchRequest.text("x", "   ")
    with pytest.raises(InvalidInputError):
        BatchRequest.text("x", "ok", dimension=512)
    with pytest.raises(InvalidInputError):
        BatchRequest.text("", "ok")
    with pytest.raises(ConfigurationError):
        env.jobs(role_arn="BedrockBatch")
    with pytest.raises(ConfigurationError):
        env.jobs(work_s3_uri="/tmp/work")
    assert env.fake.requests == []
    assert "Contents" not in env.s3.list_objects_v2(Bucket=BUCKET)


def test_small_catalog_is_indexed_synchronously(env: Env) -> None:
    store = LocalVectorStore(dimension=DIM)
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), store)
    report = index_with_batch(searcher, catalog(20), jobs=env.jobs())
    assert report.indexed == 20 and report.embed_calls == 20
    assert env.fake.requests == []


def test_an_interrupted_batch_index_resumes_the_submitted_job(env: Env) -> None:
    products = catalog(150)
    store = LocalVectorStore(dimension=DIM)
    searcher = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), store)
    env.fake.script_batch(BatchJobScript(polls_until_done=30))
    with pytest.raises(JobTimeoutError):
        index_with_batch(searcher, products, jobs=env.jobs(), timeout=600)
    assert len(store) == 0  # nothing half-written
    # A new process with the same work prefix picks the running job up again.
    report = index_with_batch(searcher, products, jobs=env.jobs(), timeout=24 * 3600)
    assert report.indexed == 150 and report.failed == []
    assert env.fake.calls["CreateModelInvocationJob"] == 1
