"""FakeBedrock itself: strict schema validation, recording, error injection, thread safety."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from crossmodal_search._types import NOVA_MODEL_ID
from crossmodal_search.embeddings import OfflineEmbedder
from crossmodal_search.testing import FakeBedrock
from tests.embeddings_helpers import MP4, image_bytes


def invoke(fake: FakeBedrock, body: object, model_id: str = NOVA_MODEL_ID) -> dict[str, Any]:
    client = fake.client()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.invoke_model(
        modelId=model_id, body=raw, contentType="application/json", accept="application/json"
    )
    parsed: dict[str, Any] = json.loads(response["body"].read())
    return parsed


def text_body(**params: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "embeddingPurpose": "GENERIC_INDEX",
        "embeddingDimension": 256,
        "text": {"truncationMode": "END", "value": "hello"},
    }
    p.update(params)
    return {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {k: v for k, v in p.items() if v is not None},
    }


PNG_B64 = base64.b64encode(image_bytes("PNG")).decode()

INVALID: list[tuple[str, object]] = [
    ("not json", b"{not json"),
    ("array body", [1, 2]),
    ("unknown top-level field", {**text_body(), "extra": True}),
    ("missing taskType", {"singleEmbeddingParams": text_body()["singleEmbeddingParams"]}),
    ("segmented task", {**text_body(), "taskType": "SEGMENTED_EMBEDDING"}),
    ("bad task", {**text_body(), "taskType": "EMBED"}),
    ("bad schema version", {**text_body(), "schemaVersion": "v2"}),
    ("missing params", {"taskType": "SINGLE_EMBEDDING"}),
    ("missing purpose", text_body(embeddingPurpose=None)),
    ("bad purpose", text_body(embeddingPurpose="generic_index")),
    ("bad dimension", text_body(embeddingDimension=512)),
    ("string dimension", text_body(embeddingDimension="256")),
    ("unknown param", text_body(normalize=True)),
    ("no modality", text_body(text=None)),
    (
        "two modalities",
        text_body(image={"format": "png", "source": {"bytes": PNG_B64}}),
    ),
    ("text missing truncation", text_body(text={"value": "a"})),
    ("text bad truncation", text_body(text={"truncationMode": "MID", "value": "a"})),
    ("text empty value", text_body(text={"truncationMode": "END", "value": ""})),
    ("text too long", text_body(text={"truncationMode": "END", "value": "a" * 50_001})),
    (
        "text value and source",
        text_body(
            text={
                "truncationMode": "END",
                "value": "a",
                "source": {"s3Location": {"uri": "s3://bkt/a.txt"}},
            }
        ),
    ),
    ("text bytes", text_body(text={"truncationMode": "END", "source": {"bytes": "aGk="}})),
    ("text unknown field", text_body(text={"truncationMode": "END", "value": "a", "x": 1})),
    (
        "image bad format",
        text_body(text=None, image={"format": "bmp", "source": {"bytes": PNG_B64}}),
    ),
    (
        "image format mismatch",
        text_body(text=None, image={"format": "jpeg", "source": {"bytes": PNG_B64}}),
    ),
    (
        "image bad base64",
        text_body(text=None, image={"format": "png", "source": {"bytes": "@@not base64@@"}}),
    ),
    (
        "image not an image",
        text_body(
            text=None,
            image={"format": "png", "source": {"bytes": base64.b64encode(b"junk").decode()}},
        ),
    ),
    (
        "image bad detail",
        text_body(
            text=None,
            image={"format": "png", "source": {"bytes": PNG_B64}, "detailLevel": "HIGH"},
        ),
    ),
    ("image missing source", text_body(text=None, image={"format": "png"})),
    (
        "source with both",
        text_body(
            text=None,
            image={
                "format": "png",
                "source": {"bytes": PNG_B64, "s3Location": {"uri": "s3://bkt/a.png"}},
            },
        ),
    ),
    (
        "bad s3 uri",
        text_body(
            text=None, image={"format": "png", "source": {"s3Location": {"uri": "s3://B/a"}}}
        ),
    ),
    (
        "bad bucket owner",
        text_body(
            text=None,
            image={
                "format": "png",
                "source": {"s3Location": {"uri": "s3://bkt/a.png", "bucketOwner": "12"}},
            },
        ),
    ),
    (
        "audio bad format",
        text_body(text=None, audio={"format": "flac", "source": {"bytes": "aGk="}}),
    ),
    (
        "audio with detail level",
        text_body(
            text=None,
            audio={"format": "mp3", "source": {"bytes": "aGk="}, "detailLevel": "STANDARD_IMAGE"},
        ),
    ),
    (
        "video missing mode",
        text_body(text=None, video={"format": "mp4", "source": {"bytes": "aGk="}}),
    ),
    (
        "video bad mode",
        text_body(
            text=None,
            video={"format": "mp4", "source": {"bytes": "aGk="}, "embeddingMode": "BOTH"},
        ),
    ),
]


@pytest.mark.parametrize(("case", "body"), INVALID, ids=[c for c, _ in INVALID])
def test_invalid_bodies_get_a_validation_exception(case: str, body: object) -> None:
    fake = FakeBedrock()
    with pytest.raises(ClientError) as info:
        invoke(fake, body)
    assert info.value.response["Error"]["Code"] == "ValidationException", case
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fake.successes == 0 and fake.calls == 1


def test_valid_bodies_answered_in_the_documented_shape() -> None:
    fake = FakeBedrock()
    out = invoke(fake, text_body())
    assert set(out) == {"embeddings"}
    (item,) = out["embeddings"]
    assert item["embeddingType"] == "TEXT" and len(item["embedding"]) == 256
    # no dimension -> the service default, 3072
    out = invoke(fake, text_body(embeddingDimension=None))
    assert len(out["embeddings"][0]["embedding"]) == 3072
    video = {"format": "mp4", "source": {"bytes": base64.b64encode(MP4).decode()}}
    out = invoke(
        fake, text_body(text=None, video={**video, "embeddingMode": "AUDIO_VIDEO_SEPARATE"})
    )
    assert sorted(e["embeddingType"] for e in out["embeddings"]) == ["AUDIO", "VIDEO"]
    out = invoke(
        fake, text_body(text=None, video={**video, "embeddingMode": "AUDIO_VIDEO_COMBINED"})
    )
    assert [e["embeddingType"] for e in out["embeddings"]] == ["AUDIO_VIDEO_COMBINED"]
    assert fake.requests[0] == text_body()


def test_default_vectors_come_from_the_offline_embedder() -> None:
    fake = FakeBedrock()
    out = invoke(fake, text_body(embeddingDimension=1024))
    expected = OfflineEmbedder(dimension=3072).embed_text("hello", dimension=1024)
    np.testing.assert_allclose(out["embeddings"][0]["embedding"], expected, rtol=1e-6)


def test_custom_embedder_is_used() -> None:
    fake = FakeBedrock(embedder=OfflineEmbedder(dimension=256))
    out = invoke(fake, text_body())
    expected = OfflineEmbedder(dimension=256).embed_text("hello")
    np.testing.assert_allclose(out["embeddings"][0]["embedding"], expected, rtol=1e-6)


def test_s3_and_media_vectors_are_deterministic_unit_vectors() -> None:
    fake = FakeBedrock()
    body = text_body(
        text=None, image={"format": "png", "source": {"s3Location": {"uri": "s3://bkt/a.png"}}}
    )
    a = invoke(fake, body)["embeddings"][0]["embedding"]
    b = invoke(FakeBedrock(), body)["embeddings"][0]["embedding"]
    assert a == b
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-5


def test_fail_next_counts_down_then_recovers() -> None:
    fake = FakeBedrock()
    fake.fail_next("ServiceUnavailableException", times=2, message="busy")
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            invoke(fake, text_body())
        assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
        assert info.value.response["Error"]["Message"] == "busy"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    invoke(fake, text_body())
    assert fake.errors == {"ServiceUnavailableException": 2} and fake.successes == 1
    fake.fail_always("ThrottlingException")
    with pytest.raises(ClientError):
        invoke(fake, text_body())
    fake.reset_failures()
    invoke(fake, text_body())


def test_fake_is_thread_safe() -> None:
    fake = FakeBedrock()
    client = fake.client()
    fake.fail_next("ThrottlingException", times=10)
    errors: list[str] = []

    def work() -> None:
        for _ in range(10):
            try:
                client.invoke_model(modelId=NOVA_MODEL_ID, body=json.dumps(text_body()))
            except ClientError as exc:
                errors.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.calls == 40 and len(fake.requests) == 40
    assert errors == ["ThrottlingException"] * 10 and fake.successes == 30


def test_recording_can_be_turned_off() -> None:
    fake = FakeBedrock(record_requests=False)
    invoke(fake, text_body())
    assert fake.calls == 1 and fake.requests == []


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        FakeBedrock(latency=-1)
    with pytest.raises(ValueError):
        FakeBedrock(throttle_rate=0)
    with pytest.raises(ValueError):
        FakeBedrock().fail_next("ThrottlingException", times=-1)
