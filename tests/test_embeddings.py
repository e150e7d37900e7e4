"""NovaEmbeddings against FakeBedrock (botocore's real serialisation and parsing run)."""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import Stubber
from PIL import Image

from crossmodal_search._types import NOVA_MODEL_ID, EmbeddingPurpose
from crossmodal_search.embeddings import (
    Embedder,
    NovaEmbeddings,
    OfflineEmbedder,
    S3Source,
    make_embedder,
)
from crossmodal_search.embeddings import (
    EmbeddingPurpose as PublicPurpose,
)
from crossmodal_search.errors import ConfigurationError, InvalidInputError, ServiceError
from crossmodal_search.testing import FakeBedrock
from tests.embeddings_helpers import (
    GP3,
    MKV,
    MOV,
    MP3,
    MP4,
    OGG,
    WEBM,
    image_bytes,
    nova,
    wav_bytes,
)

ALL_PURPOSES = [p.value for p in EmbeddingPurpose]


def params(fake: FakeBedrock, i: int = -1) -> dict[str, object]:
    body = fake.requests[i]
    assert body["schemaVersion"] == "nova-multimodal-embed-v1"
    assert body["taskType"] == "SINGLE_EMBEDDING"
    assert set(body) == {"schemaVersion", "taskType", "singleEmbeddingParams"}
    p = body["singleEmbeddingParams"]
    assert isinstance(p, dict)
    return p


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("purpose", ALL_PURPOSES)
def test_text_body_field_by_field_for_every_purpose(purpose: str) -> None:
    emb, fake = nova()
    vec = emb.embed_text("red summer dress", purpose=purpose)
    p = params(fake)
    assert p == {
        "embeddingPurpose": purpose,
        "embeddingDimension": 1024,
        "text": {"truncationMode": "END", "value": "red summer dress"},
    }
    assert vec.dtype == np.float32 and vec.shape == (1024,)


@pytest.mark.parametrize("dimension", [256, 384, 1024, 3072])
@pytest.mark.parametrize("truncation", ["START", "END", "NONE"])
def test_text_dimension_and_truncation(dimension: int, truncation: str) -> None:
    emb, fake = nova()
    vec = emb.embed_text("x", dimension=dimension, truncation=truncation)  # type: ignore[arg-type]
    assert params(fake)["embeddingDimension"] == dimension
    assert params(fake)["text"] == {"truncationMode": truncation, "value": "x"}
    assert vec.shape == (dimension,)


def test_client_default_dimension_and_enum_purpose() -> None:
    emb, fake = nova(dimension=256)
    assert emb.embed_text("a", purpose=EmbeddingPurpose.TEXT_RETRIEVAL).shape == (256,)
    assert params(fake)["embeddingPurpose"] == "TEXT_RETRIEVAL"
    assert PublicPurpose is EmbeddingPurpose


def test_text_from_s3_source_has_no_value() -> None:
    emb, fake = nova()
    emb.embed_text(S3Source("s3://docs-bucket/a/b.txt", bucket_owner="123456789012"))
    assert params(fake)["text"] == {
        "truncationMode": "END",
        "source": {
            "s3Location": {"uri": "s3://docs-bucket/a/b.txt", "bucketOwner": "123456789012"}
        },
    }


def test_issue_snippet_runs_against_an_injected_client(fake_credentials: None) -> None:
    # What code outside this project does: build its own client, inject it.
    c = boto3.client(
        "bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )
    FakeBedrock().attach(c)
    vec = NovaEmbeddings(client=c).embed_text("red summer dress", purpose="GENERIC_RETRIEVAL")
    assert vec.dtype == np.float32
    assert vec.shape == (1024,)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


def test_works_with_botocore_stubber() -> None:
    c = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    answer = json.dumps({"embeddings": [{"embeddingType": "TEXT", "embedding": [0.5] * 256}]})
    expected_body = json.dumps(
        {
            "schemaVersion": "nova-multimodal-embed-v1",
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": {
                "embeddingPurpose": "GENERIC_INDEX",
                "embeddingDimension": 256,
                "text": {"truncationMode": "END", "value": "hello"},
            },
        },
        separators=(",", ":"),
    )
    with Stubber(c) as stub:
        stub.add_response(
            "invoke_model",
            {
                "body": StreamingBody(io.BytesIO(answer.encode()), len(answer)),
                "contentType": "application/json",
            },
            {
                "modelId": NOVA_MODEL_ID,
                "body": expected_body,
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        vec = NovaEmbeddings(client=c, dimension=256).embed_text("hello")
        stub.assert_no_pending_responses()
    assert vec.tolist() == [0.5] * 256


def test_embed_texts_keeps_input_order_and_matches_single_calls() -> None:
    emb, fake = nova(max_concurrency=4)
    texts = [f"product number {i} in colour {c}" for i, c in enumerate(["red", "blue"] * 10)]
    batch = emb.embed_texts(texts, purpose="GENERIC_INDEX")
    assert batch.shape == (20, 1024) and batch.dtype == np.float32
    singles = np.stack([emb.embed_text(t) for t in texts])
    np.testing.assert_array_equal(batch, singles)
    assert emb.calls == 40 == fake.calls


def test_embed_texts_concurrency_is_bounded() -> None:
    fake = FakeBedrock(latency=0.02)
    emb, _ = nova(fake, max_concurrency=3)
    emb.embed_texts([f"t{i}" for i in range(12)])
    assert fake.max_in_flight == 3


def test_embed_texts_empty_gives_empty_matrix() -> None:
    emb, fake = nova(dimension=384)
    assert emb.embed_texts([]).shape == (0, 384)
    assert emb.embed_images([]).shape == (0, 384)
    assert fake.calls == 0


def test_duplicates_in_a_batch_are_sent_once() -> None:
    emb, fake = nova()
    out = emb.embed_texts(["red", "blue", "red", "red", "blue"])
    assert fake.calls == 2
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[4])
    assert not np.array_equal(out[0], out[1])
    img = image_bytes()
    assert emb.embed_images([img, img]).shape == (2, 1024)
    assert fake.calls == 3


def test_batch_error_propagates_and_stops_remaining_work() -> None:
    emb, fake = nova(max_concurrency=1)
    fake.fail_next("AccessDeniedException")
    with pytest.raises(ServiceError) as info:
        emb.embed_texts(["a", "b", "c"])
    assert info.value.code == "AccessDeniedException"
    assert fake.calls == 1


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("pil_format", "nova_format"),
    [("PNG", "png"), ("JPEG", "jpeg"), ("GIF", "gif"), ("WEBP", "webp")],
)
@pytest.mark.parametrize("detail", ["STANDARD_IMAGE", "DOCUMENT_IMAGE"])
def test_image_body_sends_supported_formats_as_is(
    pil_format: str, nova_format: str, detail: str
) -> None:
    data = image_bytes(pil_format)
    emb, fake = nova()
    vec = emb.embed_image(data, purpose="IMAGE_RETRIEVAL", detail_level=detail)  # type: ignore[arg-type]
    p = params(fake)
    assert p["embeddingPurpose"] == "IMAGE_RETRIEVAL"
    assert p["embeddingDimension"] == 1024
    image = p["image"]
    assert isinstance(image, dict)
    assert set(image) == {"format", "source", "detailLevel"}
    assert image["format"] == nova_format
    assert image["detailLevel"] == detail
    assert base64.b64decode(image["source"]["bytes"]) == data
    assert vec.shape == (1024,)


def test_image_format_comes_from_bytes_not_file_name(tmp_path) -> None:
    path = tmp_path / "photo.jpg"  # a PNG with a .jpg name
    path.write_bytes(image_bytes("PNG"))
    emb, fake = nova()
    emb.embed_image(path)
    emb.embed_image(str(path))
    assert params(fake, 0)["image"]["format"] == "png"  # type: ignore[index]
    assert params(fake, 1)["image"]["format"] == "png"  # type: ignore[index]


@pytest.mark.parametrize("pil_format", ["BMP", "TIFF"])
def test_other_formats_are_converted_before_sending(pil_format: str) -> None:
    emb, fake = nova()
    emb.embed_image(image_bytes(pil_format))
    image = params(fake)["image"]
    assert isinstance(image, dict)
    assert image["format"] == "jpeg"
    sent = Image.open(io.BytesIO(base64.b64decode(image["source"]["bytes"])))
    assert sent.format == "JPEG" and sent.size == (40, 30)


def test_pil_image_input() -> None:
    emb, fake = nova()
    emb.embed_image(Image.new("RGBA", (10, 10), (0, 0, 255, 128)))
    image = params(fake)["image"]
    assert isinstance(image, dict)
    assert image["format"] == "png"  # alpha kept


def test_image_from_s3_with_bucket_owner() -> None:
    emb, fake = nova()
    emb.embed_image(S3Source("s3://catalog-images/shoes/1.JPG", bucket_owner="210987654321"))
    emb.embed_image("s3://catalog-images/x/2.webp")
    emb.embed_image("s3://catalog-images/x/no-extension", format="png")
    assert params(fake, 0)["image"] == {
        "format": "jpeg",
        "source": {
            "s3Location": {"uri": "s3://catalog-images/shoes/1.JPG", "bucketOwner": "210987654321"}
        },
        "detailLevel": "STANDARD_IMAGE",
    }
    assert params(fake, 1)["image"]["format"] == "webp"  # type: ignore[index]
    assert params(fake, 1)["image"]["source"] == {  # type: ignore[index]
        "s3Location": {"uri": "s3://catalog-images/x/2.webp"}
    }
    assert params(fake, 2)["image"]["format"] == "png"  # type: ignore[index]


def test_embed_images_order_and_geometry() -> None:
    emb, _ = nova()
    red, blue = image_bytes(colour=(210, 20, 20)), image_bytes(colour=(20, 40, 210))
    vecs = emb.embed_images([red, blue, red])
    np.testing.assert_array_equal(vecs[0], vecs[2])
    query = emb.embed_text("red dress", purpose="GENERIC_RETRIEVAL")
    assert float(query @ vecs[0]) > float(query @ vecs[1])


def test_embed_document_uses_document_detail_level() -> None:
    emb, fake = nova()
    emb.embed_document(image_bytes("PNG"), purpose="DOCUMENT_RETRIEVAL")
    p = params(fake)
    assert p["embeddingPurpose"] == "DOCUMENT_RETRIEVAL"
    assert p["image"]["detailLevel"] == "DOCUMENT_IMAGE"  # type: ignore[index]


def test_embed_document_renders_a_pdf_page(tmp_path) -> None:
    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument.new()
    doc.new_page(200, 300)
    doc.new_page(300, 200)
    path = tmp_path / "manual.pdf"
    doc.save(str(path))
    doc.close()
    emb, fake = nova()
    emb.embed_document(path, page_number=1)
    image = params(fake)["image"]
    sent = Image.open(io.BytesIO(base64.b64decode(image["source"]["bytes"])))  # type: ignore[index]
    assert sent.size == (600, 400)  # page 1 (landscape), rendered at 2x
    assert image["detailLevel"] == "DOCUMENT_IMAGE"  # type: ignore[index]
    with pytest.raises(InvalidInputError, match="out of range"):
        emb.embed_document(path, page_number=2)
    assert fake.calls == 1


# --------------------------------------------------------------------------- audio / video


@pytest.mark.parametrize(("data", "fmt"), [(MP3, "mp3"), (wav_bytes(1.0), "wav"), (OGG, "ogg")])
def test_audio_body(data: bytes, fmt: str) -> None:
    emb, fake = nova()
    vec = emb.embed_audio(data, purpose="AUDIO_RETRIEVAL")
    p = params(fake)
    assert p["embeddingPurpose"] == "AUDIO_RETRIEVAL"
    assert p["audio"] == {"format": fmt, "source": {"bytes": base64.b64encode(data).decode()}}
    assert vec.shape == (1024,)


def test_audio_from_path_and_s3(tmp_path) -> None:
    path = tmp_path / "clip.bin"
    path.write_bytes(OGG)
    emb, fake = nova()
    emb.embed_audio(path)
    emb.embed_audio("s3://media-bucket/jingle.mp3")
    assert params(fake, 0)["audio"]["format"] == "ogg"  # type: ignore[index]
    assert params(fake, 1)["audio"] == {
        "format": "mp3",
        "source": {"s3Location": {"uri": "s3://media-bucket/jingle.mp3"}},
    }


@pytest.mark.parametrize(
    ("data", "fmt"), [(MP4, "mp4"), (MOV, "mov"), (GP3, "3gp"), (WEBM, "webm"), (MKV, "mkv")]
)
def test_video_combined_body(data: bytes, fmt: str) -> None:
    emb, fake = nova()
    vec = emb.embed_video(data, purpose="VIDEO_RETRIEVAL")
    p = params(fake)
    assert p["embeddingPurpose"] == "VIDEO_RETRIEVAL"
    assert p["video"] == {
        "format": fmt,
        "source": {"bytes": base64.b64encode(data).decode()},
        "embeddingMode": "AUDIO_VIDEO_COMBINED",
    }
    assert isinstance(vec, np.ndarray) and vec.shape == (1024,)


def test_video_separate_returns_both_vectors_keyed_by_type() -> None:
    emb, fake = nova(dimension=384)
    out = emb.embed_video(
        S3Source("s3://media-bucket/clip.mp4", bucket_owner="123456789012"),
        embedding_mode="AUDIO_VIDEO_SEPARATE",
    )
    assert set(out) == {"VIDEO", "AUDIO"}
    assert out["VIDEO"].shape == out["AUDIO"].shape == (384,)
    assert not np.array_equal(out["VIDEO"], out["AUDIO"])
    assert params(fake)["video"]["embeddingMode"] == "AUDIO_VIDEO_SEPARATE"  # type: ignore[index]


def test_separate_response_order_does_not_matter() -> None:
    c = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    answer = json.dumps(
        {
            "embeddings": [
                {"embeddingType": "AUDIO", "embedding": [1.0, 0.0, 0.0] + [0.0] * 253},
                {"embeddingType": "VIDEO", "embedding": [0.0, 1.0, 0.0] + [0.0] * 253},
            ]
        }
    ).encode()
    with Stubber(c) as stub:
        stub.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(answer), len(answer)), "contentType": "json"},
        )
        out = NovaEmbeddings(client=c, dimension=256).embed_video(
            MP4, embedding_mode="AUDIO_VIDEO_SEPARATE"
        )
    assert out["AUDIO"][0] == 1.0 and out["VIDEO"][1] == 1.0


# --------------------------------------------------------------------------- responses


def _stubbed(answer: object, dimension: int = 256) -> NovaEmbeddings:
    c = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    stub = Stubber(c)
    stub.add_response(
        "invoke_model", {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "json"}
    )
    stub.activate()
    return NovaEmbeddings(client=c, dimension=dimension)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"embeddings": [{"embeddingType": "TEXT", "embedding": [0.1] * 255}]}, "shape"),
        ({"embeddings": [{"embeddingType": "TEXT", "embedding": [float("nan")] * 256}]}, "NaN"),
        ({"embeddings": [{"embeddingType": "IMAGE", "embedding": [0.1] * 256}]}, "no TEXT"),
        ({"embeddings": []}, "unexpected body"),
        ({}, "unexpected body"),
        (b"not json", "unexpected body"),
        ({"embeddings": [{"embeddingType": "TEXT", "embedding": ["a"] * 256}]}, "non-numeric"),
    ],
)
def test_bad_responses_raise_service_error(answer: object, match: str) -> None:
    with pytest.raises(ServiceError, match=match) as info:
        _stubbed(answer).embed_text("hello")
    assert info.value.code == "InvalidModelResponse"


def test_truncated_text_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    answer = {
        "embeddings": [
            {"embeddingType": "TEXT", "embedding": [0.1] * 256, "truncatedCharLength": 9000}
        ]
    }
    with caplog.at_level("INFO", logger="crossmodal_search.embeddings._nova"):
        _stubbed(answer).embed_text("long " * 3000)
    assert "9000" in caplog.text


# --------------------------------------------------------------------------- construction


def test_sdk_built_client_has_single_botocore_attempt() -> None:
    emb = NovaEmbeddings(region_name="us-east-1")
    cfg: Any = emb.client.meta.config
    retries = cfg.retries
    assert retries.get("total_max_attempts") == 1, retries
    assert emb.client.meta.region_name == "us-east-1"


def test_sdk_built_client_keeps_user_config_and_session() -> None:
    session = boto3.Session(region_name="eu-west-1")
    emb = NovaEmbeddings(session=session, config=Config(read_timeout=7))
    assert emb.client.meta.region_name == "eu-west-1"
    cfg: Any = emb.client.meta.config
    assert cfg.read_timeout == 7
    assert "crossmodal-search/" in getattr(emb.client.meta.config, "user_agent_extra", "")


def test_default_region_is_us_east_1_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert NovaEmbeddings().client.meta.region_name == "us-east-1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dimension": 512},
        {"max_concurrency": 0},
        {"model_id": ""},
        {"cache": 42},
        {"region_name": "us-east-1"},
        {"config": Config(read_timeout=3)},
    ],
)
def test_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        NovaEmbeddings(client=FakeBedrock().client(), **kwargs)  # type: ignore[arg-type]


def test_satisfies_embedder_protocol() -> None:
    emb, _ = nova()
    assert isinstance(emb, Embedder)
    assert isinstance(OfflineEmbedder(), Embedder)
    assert emb.model_id == NOVA_MODEL_ID


def test_calls_counter_is_thread_safe() -> None:
    emb, fake = nova()
    batches = [[f"x{i}-{j}" for j in range(10)] for i in range(4)]
    threads = [threading.Thread(target=emb.embed_texts, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert emb.calls == 40 == fake.calls


# --------------------------------------------------------------------------- make_embedder


def test_make_embedder_auto_without_credentials_is_offline() -> None:
    embedder, why = make_embedder("auto", dimension=256)
    assert isinstance(embedder, OfflineEmbedder) and embedder.dimension == 256
    assert "no AWS credentials" in why


def test_make_embedder_auto_with_credentials_is_nova(fake_credentials: None) -> None:
    embedder, why = make_embedder("auto", dimension=384, region_name="us-east-1")
    assert isinstance(embedder, NovaEmbeddings) and embedder.dimension == 384
    assert "credentials found via env" in why and "us-east-1" in why


def test_make_embedder_nova_never_falls_back() -> None:
    with pytest.raises(ConfigurationError, match="credentials"):
        make_embedder("nova")


def test_make_embedder_offline_and_unknown(fake_credentials: None) -> None:
    embedder, why = make_embedder("offline")
    assert isinstance(embedder, OfflineEmbedder) and "requested" in why
    with pytest.raises(ConfigurationError):
        make_embedder("titan")  # type: ignore[arg-type]


def test_make_embedder_nova_with_cache(fake_credentials: None, tmp_path) -> None:
    embedder, _ = make_embedder("nova", cache=tmp_path / "c.sqlite")
    assert isinstance(embedder, NovaEmbeddings) and embedder.cache is not None
    embedder.close()


def test_default_inline_limit_keeps_the_whole_body_under_25mb() -> None:
    from crossmodal_search.embeddings import INLINE_LIMIT_BYTES

    data = MP4 + b"\x00" * (INLINE_LIMIT_BYTES * 3 // 4 - len(MP4) - 100)  # base64 ~ limit
    emb, fake = nova()
    with pytest.raises(InvalidInputError, match="inline limit"):
        emb.embed_video(data)
    assert fake.calls == 0
    ok = data[: len(data) - 2000]
    emb.embed_video(ok)
    assert fake.calls == 1 and fake.successes == 1
