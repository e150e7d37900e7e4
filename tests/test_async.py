"""Async segmented embeddings: long video/audio/text in S3 -> per-segment vectors in a store.

moto answers S3 (the inputs and the result files); ``FakeBedrockJobs`` answers the Bedrock
async-invoke calls at botocore's before-send boundary and writes the result files into moto's
S3 laid out as the service documents. Segment vectors are the offline embedder's vectors of what
each segment shows, so a text query finds the right segment.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.embeddings import OfflineEmbedder, SegmentedEmbeddingJobs, SegmentedJob
from crossmodal_search.embeddings._segments import (
    SegmentationConfig,
    SegmentedResult,
)
from crossmodal_search.errors import (
    EmbeddingJobError,
    InvalidInputError,
    JobTimeoutError,
    RetryExhaustedError,
    UnsupportedMediaError,
)
from crossmodal_search.search import MediaItem, index_media, segment_records
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.testing import AsyncJobScript, FakeBedrockJobs
from tests.media_helpers import BLENDER_SCENES, KETTLE_SCENES, scenes

DIM = 256
BUCKET = "catalog-media"
OUT = f"s3://{BUCKET}/embeddings/"


def num(metadata: Mapping[str, object], key: str) -> float:
    value = metadata[key]
    assert isinstance(value, int | float)
    return float(value)


@dataclass
class FakeClock:
    """An instant clock: ``sleep`` advances ``now``; every sleep is recorded."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    s3: Any
    fake: FakeBedrockJobs
    clock: FakeClock
    jobs: SegmentedEmbeddingJobs


@pytest.fixture
def env(fake_credentials: None) -> Iterator[Env]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="products/P-KETTLE/demo.mp4", Body=b"\0\0\0\x18ftypmp42")
        s3.put_object(Bucket=BUCKET, Key="products/P-BLEND/demo.mov", Body=b"\0\0\0\x14ftypqt  ")
        s3.put_object(Bucket=BUCKET, Key="products/P-KETTLE/jingle.mp3", Body=b"ID3\x03")
        fake = FakeBedrockJobs(embedder=OfflineEmbedder(dimension=DIM), s3_client=s3)
        fake.add_media(f"s3://{BUCKET}/products/P-KETTLE/demo.mp4", 120, scenes(KETTLE_SCENES))
        fake.add_media(f"s3://{BUCKET}/products/P-BLEND/demo.mov", 95, scenes(BLENDER_SCENES))
        fake.add_media(
            f"s3://{BUCKET}/products/P-KETTLE/jingle.mp3",
            12,
            ["cheerful whistle", "kettle click", "steam hiss"],
        )
        clock = FakeClock()
        jobs = SegmentedEmbeddingJobs(
            fake.client("bedrock-runtime"),
            s3,
            dimension=DIM,
            poll_interval=5,
            max_poll_interval=60,
            timeout=600,
            sleep=clock.sleep,
            clock=clock,
        )
        yield Env(s3, fake, clock, jobs)


def kettle(env: Env, **kwargs: Any) -> SegmentedJob:
    return env.jobs.start_video(
        f"s3://{BUCKET}/products/P-KETTLE/demo.mp4", output_s3_uri=OUT, **kwargs
    )


# --- the "done when": a 2-minute video becomes searchable segments ------------------


def test_two_minute_video_becomes_24_segments_whose_hits_name_product_and_time_range(
    env: Env,
) -> None:
    job = kettle(env)
    result = env.jobs.fetch_results(job, status=env.jobs.wait(job))

    assert result.status == "SUCCESS" and result.ok
    assert len(result.segments) == 24
    assert [(s.index, s.start, s.end) for s in result.segments] == [
        (i, 5.0 * i, 5.0 * i + 5) for i in range(24)
    ]
    assert {s.unit for s in result.segments} == {"seconds"}
    assert {s.embedding_type for s in result.segments} == {"AUDIO_VIDEO_COMBINED"}
    assert result.source_uri == f"s3://{BUCKET}/products/P-KETTLE/demo.mp4"
    assert result.vectors().shape == (24, DIM)

    blender = env.jobs.embed_video(
        f"s3://{BUCKET}/products/P-BLEND/demo.mov", output_s3_uri=OUT, segment_seconds=5
    )
    assert len(blender.segments) == 19  # 95 s -> 18 full segments and a 5 s tail
    assert (blender.segments[-1].start, blender.segments[-1].end) == (90.0, 95.0)

    store = LocalVectorStore(dimension=DIM)
    store.put(segment_records("P-KETTLE", result, kind="video"))
    store.put(segment_records("P-BLEND", blender, kind="video"))
    assert len(store) == 24 + 19

    query = OfflineEmbedder(dimension=DIM).embed_text("pouring boiling water into a teapot")
    hit = store.query(query, top_k=1)[0]
    assert hit.metadata["product_id"] == "P-KETTLE"
    assert hit.metadata["type"] == "video"
    assert hit.key.startswith("video-P-KETTLE-")
    assert 60.0 <= num(hit.metadata, "segment_start") < 80.0  # segments 12-15
    assert num(hit.metadata, "segment_end") - num(hit.metadata, "segment_start") == 5.0
    assert hit.metadata["segment_unit"] == "seconds"
    assert hit.metadata["source_uri"] == f"s3://{BUCKET}/products/P-KETTLE/demo.mp4"

    ice = store.query(
        OfflineEmbedder(dimension=DIM).embed_text("crushing ice for a smoothie"),
        top_k=3,
        filter={"type": "video"},
    )
    assert {m.metadata["product_id"] for m in ice} == {"P-BLEND"}
    assert all(30.0 <= num(m.metadata, "segment_start") < 60.0 for m in ice)


def test_request_is_a_segmented_embedding_document_with_the_settings(env: Env) -> None:
    kettle(env, segment_seconds=10, embedding_mode="AUDIO_VIDEO_SEPARATE")
    ((op, body),) = env.fake.requests
    assert op == "StartAsyncInvoke"
    assert isinstance(body["modelInput"], dict)  # a document, not a JSON string
    assert body["modelInput"] == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SEGMENTED_EMBEDDING",
        "segmentedEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": DIM,
            "video": {
                "format": "mp4",
                "source": {"s3Location": {"uri": f"s3://{BUCKET}/products/P-KETTLE/demo.mp4"}},
                "embeddingMode": "AUDIO_VIDEO_SEPARATE",
                "segmentationConfig": {"durationSeconds": 10},
            },
        },
    }
    assert body["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": OUT}}


def test_separate_audio_and_video_vectors_get_distinct_keys(env: Env) -> None:
    job = kettle(env, segment_seconds=30, embedding_mode="AUDIO_VIDEO_SEPARATE")
    result = env.jobs.fetch_results(job, status=env.jobs.wait(job))
    assert sorted((s.embedding_type, s.index) for s in result.segments) == sorted(
        [("VIDEO", i) for i in range(4)] + [("AUDIO", i) for i in range(4)]
    )
    records = segment_records("P-KETTLE", result, kind="video")
    assert len({r.key for r in records}) == 8
    assert {r.metadata["embedding_type"] for r in records} == {"VIDEO", "AUDIO"}


def test_audio_segments(env: Env) -> None:
    result = env.jobs.embed_audio(
        f"s3://{BUCKET}/products/P-KETTLE/jingle.mp3", output_s3_uri=OUT, segment_seconds=5
    )
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.0)]
    assert {s.embedding_type for s in result.segments} == {"AUDIO"}
    records = segment_records("P-KETTLE", result, kind="audio")
    assert [r.key for r in records] == ["audio-P-KETTLE-0", "audio-P-KETTLE-1", "audio-P-KETTLE-2"]


def test_long_text_is_uploaded_and_segmented_with_character_positions(env: Env) -> None:
    words = [f"word{i} kettle manual section" for i in range(1200)]
    text = " ".join(words)  # about 35,000 characters: over the synchronous limit
    result = env.jobs.embed_long_text(
        text,
        staging_s3_uri=f"s3://{BUCKET}/staging/P-KETTLE-manual.txt",
        output_s3_uri=OUT,
        max_length_chars=5000,
    )
    stored = env.s3.get_object(Bucket=BUCKET, Key="staging/P-KETTLE-manual.txt")["Body"].read()
    assert stored.decode() == text
    segs = result.segments
    assert len(segs) == -(-len(text) // 5000) or len(segs) == -(-len(text) // 5000) + 1
    assert {s.unit for s in segs} == {"chars"} and {s.embedding_type for s in segs} == {"TEXT"}
    assert segs[0].start == 0 and segs[-1].end == len(text)
    for a, b in itertools.pairwise(segs):
        assert a.end is not None and b.start is not None
        assert a.end <= b.start and text[int(a.end) : int(b.start)].strip() == ""
    assert all(s.end is not None and s.start is not None and s.end - s.start <= 5000 for s in segs)
    ((_, body),) = [r for r in env.fake.requests if r[0] == "StartAsyncInvoke"]
    text_params = body["modelInput"]["segmentedEmbeddingParams"]["text"]
    assert text_params["segmentationConfig"] == {"maxLengthChars": 5000}
    assert text_params["source"] == {
        "s3Location": {"uri": f"s3://{BUCKET}/staging/P-KETTLE-manual.txt"}
    }
    records = segment_records("P-KETTLE", result, kind="document")
    assert records[1].metadata["segment_unit"] == "chars"
    assert records[1].metadata["segment_start"] == float(segs[1].start or 0)


# --- failures are reported, never skipped ---------------------------------------------------


@pytest.mark.parametrize("status_string", ["FAILURE", "FAILED"])
def test_failed_segments_are_reported_per_segment(env: Env, status_string: str) -> None:
    env.fake.script_async(
        AsyncJobScript(
            failed_segments={3: "RAI_VIOLATION_INPUT_IMAGE_DEFLECTION", 17: "INVALID_CONTENT"},
            failure_status=status_string,
        )
    )
    job = kettle(env)
    status = env.jobs.wait(job)
    result = env.jobs.fetch_results(job, status=status, on_segment_error="report")

    assert result.status == "PARTIAL_SUCCESS"
    assert len(result.segments) == 22
    assert [s.index for s in result.failed_segments] == [3, 17]
    first = result.failed_segments[0]
    assert first.vector is None and not first.ok
    assert first.failure_reason == "RAI_VIOLATION_INPUT_IMAGE_DEFLECTION"
    assert first.message == "segment 3 was not embedded"  # a known status, not "unknown status"
    assert (first.start, first.end) == (15.0, 20.0)
    assert 3 not in {s.index for s in result.segments}
    # Records exist only for good segments; the failed ones are named in the result.
    assert len(segment_records("P-KETTLE", result, kind="video")) == 22

    with pytest.raises(EmbeddingJobError) as info:
        env.jobs.fetch_results(job, status=status)  # default: raise
    err = info.value
    assert err.job_id == job.invocation_arn and err.status == "PARTIAL_SUCCESS"
    assert len(err.failures) == 2
    assert (
        "segment 3" in err.failures[0] and "RAI_VIOLATION_INPUT_IMAGE_DEFLECTION" in err.failures[0]
    )
    assert "15-20 seconds" in err.failures[0]


def test_a_wholly_failed_output_is_reported(env: Env) -> None:
    env.fake.script_async(AsyncJobScript(fail_output="INTERNAL_SERVER_EXCEPTION"))
    job = kettle(env)
    status = env.jobs.wait(job)
    result = env.jobs.fetch_results(job, status=status, on_segment_error="report")
    assert result.status == "FAILURE" and not result.segments
    (failure,) = result.failed_outputs
    assert failure.failure_reason == "INTERNAL_SERVER_EXCEPTION"
    assert failure.embedding_type == "AUDIO_VIDEO_COMBINED"
    with pytest.raises(EmbeddingJobError, match="INTERNAL_SERVER_EXCEPTION"):
        env.jobs.fetch_results(job, status=status)


def test_every_segment_failed_with_FAILED_string(env: Env) -> None:
    env.fake.script_async(
        AsyncJobScript(
            failed_segments=dict.fromkeys(range(24), "INVALID_CONTENT"), failure_status="FAILED"
        )
    )
    job = kettle(env)
    result = env.jobs.fetch_results(job, status=env.jobs.wait(job), on_segment_error="report")
    assert result.status == "FAILURE"
    assert len(result.failed_segments) == 24 and not result.segments


def test_failed_job_raises_with_the_failure_message(env: Env) -> None:
    env.fake.script_async(AsyncJobScript(fail_job="Unable to read s3 object: AccessDenied"))
    job = kettle(env)
    with pytest.raises(EmbeddingJobError, match="AccessDenied") as info:
        env.jobs.wait(job)
    assert info.value.status == "Failed" and info.value.job_id == job.invocation_arn


def test_undeclared_media_fails_the_job_like_unreadable_media(env: Env) -> None:
    env.s3.put_object(Bucket=BUCKET, Key="products/X/broken.mp4", Body=b"not a video")
    job = env.jobs.start_video(f"s3://{BUCKET}/products/X/broken.mp4", output_s3_uri=OUT)
    with pytest.raises(EmbeddingJobError, match="INVALID_CONTENT"):
        env.jobs.wait(job)


def test_never_finishing_job_times_out_with_capped_jittered_backoff(env: Env) -> None:
    env.fake.script_async(AsyncJobScript(never_finishes=True))
    job = kettle(env)
    start = env.clock.now
    with pytest.raises(JobTimeoutError) as info:
        env.jobs.wait(job, timeout=900)
    err = info.value
    assert isinstance(err, EmbeddingJobError)
    assert err.job_id == job.invocation_arn and err.status == "InProgress"
    assert env.clock.now - start == pytest.approx(900)  # the last sleep is cut to the deadline
    sleeps = env.clock.sleeps
    assert max(sleeps) <= 60  # capped
    assert sleeps[0] <= 5 and sleeps[0] >= 2.5  # first window [poll_interval/2, poll_interval]
    assert sleeps[4] > sleeps[0]  # backs off
    assert len(set(sleeps[5:-1])) > 1  # jittered, not a fixed period
    polls = env.fake.calls["GetAsyncInvoke"]
    assert polls == len(sleeps) + 1 and polls < 40  # no hot loop
    with pytest.raises(EmbeddingJobError, match="InProgress"):
        env.jobs.fetch_results(job)  # not completed: never reads partial files


def test_output_uri_already_including_the_job_id(env: Env) -> None:
    env.fake.script_async(AsyncJobScript(output_uri_includes_job_id=True))
    job = kettle(env)
    status = env.jobs.wait(job)
    assert status.output_s3_uri is not None and status.output_s3_uri.endswith(job.job_id)
    assert len(env.jobs.fetch_results(job, status=status).segments) == 24


def test_output_file_uris_are_followed_not_guessed(env: Env) -> None:
    job = kettle(env)
    env.jobs.wait(job)
    # Move the segments file and point the result file at the new place.
    folder = f"embeddings/{job.job_id}"
    result_key = f"{folder}/segmented-embedding-result.json"
    doc = json.loads(env.s3.get_object(Bucket=BUCKET, Key=result_key)["Body"].read())
    old = doc["embeddingResults"][0]["outputFileUri"]
    data = env.s3.get_object(Bucket=BUCKET, Key=old.split("/", 3)[3])["Body"].read()
    env.s3.delete_object(Bucket=BUCKET, Key=old.split("/", 3)[3])
    env.s3.put_object(Bucket=BUCKET, Key=f"{folder}/renamed-output-0.jsonl", Body=data)
    doc["embeddingResults"][0]["outputFileUri"] = f"s3://{BUCKET}/{folder}/renamed-output-0.jsonl"
    env.s3.put_object(Bucket=BUCKET, Key=result_key, Body=json.dumps(doc).encode())
    assert len(env.jobs.fetch_results(job).segments) == 24


def test_missing_result_file_is_an_error_not_an_empty_result(env: Env) -> None:
    job = kettle(env)
    env.jobs.wait(job)
    env.s3.delete_object(
        Bucket=BUCKET, Key=f"embeddings/{job.job_id}/segmented-embedding-result.json"
    )
    with pytest.raises(EmbeddingJobError, match=r"segmented-embedding-result\.json"):
        env.jobs.fetch_results(job)


def test_wrong_length_embedding_in_a_result_file_is_an_error(env: Env) -> None:
    job = kettle(env)
    env.jobs.wait(job)
    key = f"embeddings/{job.job_id}/embedding-audio-video.jsonl"
    lines = env.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    first = json.loads(lines[0])
    first["embedding"] = first["embedding"][:10]
    lines[0] = json.dumps(first)
    env.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    with pytest.raises(EmbeddingJobError, match=r"line 1.*expected \(256,\)"):
        env.jobs.fetch_results(job)


def test_throttled_polls_are_retried_by_the_single_retry_layer(env: Env) -> None:
    slept: list[float] = []
    jobs = SegmentedEmbeddingJobs(
        env.fake.client("bedrock-runtime"),
        env.s3,
        dimension=DIM,
        retry_policy=RetryPolicy(max_attempts=3, sleep=slept.append),
        sleep=env.clock.sleep,
        clock=env.clock,
    )
    job = jobs.start_video(f"s3://{BUCKET}/products/P-KETTLE/demo.mp4", output_s3_uri=OUT)
    env.fake.fail_next("ThrottlingException", operation="GetAsyncInvoke", times=2)
    assert jobs.wait(job).status == "Completed"
    assert len(slept) == 2
    env.fake.fail_next("ThrottlingException", operation="GetAsyncInvoke", times=3)
    with pytest.raises(RetryExhaustedError):
        jobs.status(job)


# --- validation before any call -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"segment_seconds": 0}, InvalidInputError),
        ({"segment_seconds": 31}, InvalidInputError),
        ({"segment_seconds": 2.5}, InvalidInputError),
        ({"embedding_mode": "VIDEO_ONLY"}, InvalidInputError),
        ({"purpose": "SEARCH"}, InvalidInputError),
        ({"dimension": 512}, InvalidInputError),
        ({"output_s3_uri": "https://bucket/out"}, InvalidInputError),
        ({"output_s3_uri": "s3://Bad_Bucket/out"}, InvalidInputError),
        ({"format": "avi"}, UnsupportedMediaError),
    ],
)
def test_video_settings_are_validated_before_any_call(
    env: Env, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {"output_s3_uri": OUT, **kwargs}
    with pytest.raises(error):
        env.jobs.start_video(f"s3://{BUCKET}/products/P-KETTLE/demo.mp4", **args)
    assert env.fake.requests == []


@pytest.mark.parametrize("chars", [799, 50_001, 0])
def test_text_segment_length_is_validated_before_any_call(env: Env, chars: int) -> None:
    with pytest.raises(InvalidInputError, match="800-50000"):
        env.jobs.start_text(
            f"s3://{BUCKET}/staging/x.txt", output_s3_uri=OUT, max_length_chars=chars
        )
    with pytest.raises(InvalidInputError):
        env.jobs.embed_long_text(
            "long " * 3000,
            staging_s3_uri=f"s3://{BUCKET}/staging/y.txt",
            output_s3_uri=OUT,
            max_length_chars=chars,
        )
    assert env.fake.requests == []
    assert "Contents" not in env.s3.list_objects_v2(Bucket=BUCKET, Prefix="staging/")


def test_audio_format_is_checked_before_any_call(env: Env) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"track\.flac.*mp3"):
        env.jobs.start_audio(f"s3://{BUCKET}/a/track.flac", output_s3_uri=OUT)
    assert (
        env.jobs.start_audio(f"s3://{BUCKET}/a/track", output_s3_uri=OUT, format="wav").modality
        == "audio"
    )


def test_segmentation_config_ranges_and_defaults() -> None:
    cfg = SegmentationConfig()
    assert (cfg.max_length_chars, cfg.segment_seconds) == (32_000, 5)
    assert SegmentationConfig(max_length_chars=800, segment_seconds=1).text_payload() == {
        "maxLengthChars": 800
    }
    assert SegmentationConfig(max_length_chars=50_000, segment_seconds=30).media_payload() == {
        "durationSeconds": 30
    }
    for bad in (
        {"max_length_chars": 799},
        {"max_length_chars": 50_001},
        {"segment_seconds": 0},
        {"segment_seconds": 31},
        {"segment_seconds": True},
    ):
        with pytest.raises(InvalidInputError):
            SegmentationConfig(**bad)


def test_segment_records_refuse_to_overwrite_reserved_metadata() -> None:
    result = SegmentedResult(segments=())
    with pytest.raises(InvalidInputError, match="reserved"):
        segment_records("P1", result, kind="video", extra_metadata={"product_id": "x"})
    with pytest.raises(InvalidInputError):
        segment_records("", result, kind="video")
    assert SegmentedResult(segments=()).vectors().shape[0] == 0
    assert np.asarray(SegmentedResult(segments=(), embedding_dimension=4).vectors()).shape == (0, 4)


# --- a catalog's media into a store ---------------------------------------------------------


def test_index_media_writes_every_product_source_and_reports_failures(env: Env) -> None:
    env.s3.put_object(Bucket=BUCKET, Key="products/P-X/broken.mp4", Body=b"not a video")
    env.fake.script_async(
        AsyncJobScript(failed_segments={2: "RAI_VIOLATION_INPUT_IMAGE_DEFLECTION"}),
    )
    store = LocalVectorStore(dimension=DIM)
    items = [
        MediaItem(
            "P-KETTLE",
            "video",
            f"s3://{BUCKET}/products/P-KETTLE/demo.mp4",
            {"text": "Stainless steel kettle", "image_path": "kettle.jpg"},
        ),
        MediaItem("P-KETTLE", "audio", f"s3://{BUCKET}/products/P-KETTLE/jingle.mp3"),
        MediaItem("P-BLEND", "video", f"s3://{BUCKET}/products/P-BLEND/demo.mov"),
        MediaItem("P-X", "video", f"s3://{BUCKET}/products/P-X/broken.mp4"),
    ]
    report = index_media(store, items, jobs=env.jobs, output_s3_uri=OUT)

    assert report.indexed == 3
    assert report.vectors_written == 23 + 3 + 19  # kettle lost segment 2 of 24
    assert len(report.jobs) == 4
    by_product = {(f.product_id, f.kind): f.reason for f in report.failed}
    assert set(by_product) == {("P-KETTLE", "video"), ("P-X", "video")}
    assert "segment 2" in by_product[("P-KETTLE", "video")]
    assert "INVALID_CONTENT" in by_product[("P-X", "video")]
    hit = store.query(
        OfflineEmbedder(dimension=DIM).embed_text("filling the kettle with cold tap water"),
        top_k=1,
    )[0]
    assert hit.metadata["product_id"] == "P-KETTLE"
    assert hit.metadata["text"] == "Stainless steel kettle"  # displayable like other hits
    assert 20.0 <= num(hit.metadata, "segment_start") < 40.0
    assert hit.metadata["segment_config"] == "5s"

    again = index_media(store, items[:3], jobs=env.jobs, output_s3_uri=OUT)
    assert (again.skipped_unchanged, again.indexed, again.jobs) == (3, 0, [])
    finer = index_media(store, items[2:3], jobs=env.jobs, output_s3_uri=OUT, segment_seconds=10)
    assert finer.indexed == 1 and finer.vectors_written == 10  # settings changed: re-embedded
    stored = list(store.keys())
    blender_keys = sorted(k for k in stored if k.startswith("video-P-BLEND-"))
    assert blender_keys == sorted(f"video-P-BLEND-{i}" for i in range(10))  # no stale 5 s ones


def test_index_media_validates_items_before_any_call(env: Env) -> None:
    store = LocalVectorStore(dimension=DIM)
    video = MediaItem("P1", "video", f"s3://{BUCKET}/products/P-KETTLE/demo.mp4")
    with pytest.raises(InvalidInputError, match="two video"):
        index_media(store, [video, video], jobs=env.jobs, output_s3_uri=OUT)
    with pytest.raises(InvalidInputError, match="output_s3_uri"):
        index_media(store, [video], jobs=env.jobs)
    with pytest.raises(InvalidInputError):
        index_media(
            store, [MediaItem("P1", "video", "/local/demo.mp4")], jobs=env.jobs, output_s3_uri=OUT
        )
    with pytest.raises(InvalidInputError):
        index_media(store, [video], jobs=env.jobs, output_s3_uri=OUT, segment_seconds=40)
    assert env.fake.requests == [] and len(store) == 0


@pytest.mark.parametrize(
    "bad_line",
    ["not json", '{"segmentMetadata": "oops"}', '{"segmentMetadata": {"segmentIndex": "x"}}'],
)
def test_malformed_segment_lines_are_errors_naming_the_line(env: Env, bad_line: str) -> None:
    job = kettle(env)
    env.jobs.wait(job)
    key = f"embeddings/{job.job_id}/embedding-audio-video.jsonl"
    lines = env.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    lines[5] = bad_line
    env.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    with pytest.raises(EmbeddingJobError, match="line 6"):
        env.jobs.fetch_results(job)
