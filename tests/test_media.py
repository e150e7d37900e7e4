"""Media normalisation: format detection, conversion, EXIF, downscaling, and bad input refused
before any request reaches Bedrock."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from crossmodal_search.embeddings import (
    AUDIO_FORMATS,
    VIDEO_FORMATS,
    NovaEmbeddings,
    S3Source,
    prepare_audio,
    prepare_image,
    prepare_video,
)
from crossmodal_search.embeddings._media import base64_size, wav_duration
from crossmodal_search.errors import InvalidInputError, UnsupportedMediaError
from crossmodal_search.testing import FakeBedrock
from tests.embeddings_helpers import (
    FLV,
    GP3,
    MKV,
    MOV,
    MP3,
    MP3_NO_TAG,
    MP4,
    MPEG,
    OGG,
    WEBM,
    WMV,
    image_bytes,
    noisy_image,
    nova,
    wav_bytes,
)


def sent_image(fake: FakeBedrock) -> tuple[str, Image.Image, bytes]:
    image = fake.requests[-1]["singleEmbeddingParams"]["image"]
    data = base64.b64decode(image["source"]["bytes"])
    return image["format"], Image.open(io.BytesIO(data)), data


@pytest.mark.parametrize(
    ("pil_format", "expected", "kwargs"),
    [
        ("PNG", "png", {}),
        ("JPEG", "jpeg", {}),
        ("GIF", "gif", {}),
        ("WEBP", "webp", {}),
        ("WEBP", "webp", {"lossless": True}),
    ],
)
def test_supported_formats_detected_and_unchanged(
    pil_format: str, expected: str, kwargs: dict[str, Any]
) -> None:
    data = image_bytes(pil_format, **kwargs)
    prepared = prepare_image(data)
    assert prepared.format == expected
    assert prepared.data == data and not prepared.converted


@pytest.mark.parametrize(
    ("pil_format", "mode", "colour", "expected"),
    [
        ("BMP", "RGB", (10, 200, 10), "jpeg"),
        ("TIFF", "RGB", (10, 200, 10), "jpeg"),
        ("TIFF", "RGBA", (10, 200, 10, 100), "png"),
        ("ICO", "RGBA", (10, 200, 10, 255), "png"),
        ("PPM", "RGB", (10, 200, 10), "jpeg"),
    ],
)
def test_other_formats_converted(
    pil_format: str, mode: str, colour: tuple[int, ...], expected: str
) -> None:
    data = image_bytes(pil_format, colour=colour, mode=mode, size=(32, 32))
    prepared = prepare_image(data)
    assert prepared.format == expected and prepared.converted
    assert prepared.data is not None
    out = Image.open(io.BytesIO(prepared.data))
    assert out.format == expected.upper()
    assert out.size == (32, 32)
    r, g, b = out.convert("RGB").getpixel((16, 16))  # type: ignore[misc]
    assert g > 150 and r < 60 and b < 60


def _exif_jpeg(orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # a red mark in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def test_cmyk_jpeg_sent_as_rgb() -> None:
    prepared = prepare_image(image_bytes("JPEG", colour=(0, 255, 255, 0), mode="CMYK"))
    assert prepared.format == "jpeg" and prepared.converted and prepared.data is not None
    assert Image.open(io.BytesIO(prepared.data)).mode == "RGB"


def test_exif_orientation_applied() -> None:
    emb, fake = nova()
    emb.embed_image(_exif_jpeg(6))  # "rotate 90 CW to display"
    fmt, img, _ = sent_image(fake)
    assert fmt == "jpeg"
    assert img.size == (20, 40)
    assert img.getexif().get(0x0112, 1) == 1  # no double rotation downstream
    r, g, _b = img.convert("RGB").getpixel((15, 5))  # type: ignore[misc]
    assert r > 200 and g < 80  # the mark moved to the top-right corner


def test_exif_orientation_1_is_sent_as_is() -> None:
    data = _exif_jpeg(1)
    prepared = prepare_image(data)
    assert prepared.data == data and not prepared.converted


def test_png_with_exif_rotation_stays_png() -> None:
    img = Image.new("RGBA", (30, 10), (0, 0, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    prepared = prepare_image(buf.getvalue())
    assert prepared.format == "png" and prepared.converted
    assert prepared.data is not None
    assert Image.open(io.BytesIO(prepared.data)).size == (10, 30)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_huge_image_downscaled_under_limit(fmt: str) -> None:
    data = noisy_image((300, 200), fmt)
    limit = 40_000
    assert base64_size(len(data)) > limit
    emb, fake = nova(max_inline_bytes=limit)
    emb.embed_image(data)
    sent_fmt, img, raw = sent_image(fake)
    assert sent_fmt == fmt.lower()
    assert base64_size(len(raw)) <= limit
    w, h = img.size
    assert w < 300 and h < 200
    assert abs(w / h - 1.5) < 0.1  # aspect ratio kept


def test_animated_gif_over_limit_becomes_a_still() -> None:
    frames = [Image.open(io.BytesIO(noisy_image((120, 120)))).convert("P") for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    limit = 15_000
    assert base64_size(len(buf.getvalue())) > limit
    prepared = prepare_image(buf.getvalue(), max_inline_bytes=limit)
    assert prepared.format in ("png", "jpeg")
    assert prepared.data is not None and base64_size(len(prepared.data)) <= limit


def test_small_gif_sent_as_is() -> None:
    data = image_bytes("GIF")
    assert prepare_image(data).data == data


def test_decompression_bomb_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    emb, fake = nova()
    with pytest.raises(UnsupportedMediaError, match="decompression bomb"):
        emb.embed_image(image_bytes("PNG", size=(40, 30)))  # 1200 px: warning range
    with pytest.raises(UnsupportedMediaError, match="decompression bomb"):
        emb.embed_image(image_bytes("PNG", size=(100, 100)))  # 10000 px: Pillow's error range
    assert fake.calls == 0


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "shoe.jpg"
    with pytest.raises(InvalidInputError, match=r"not found: .*shoe\.jpg"):
        prepare_image(missing)


# --------------------------------------------------------------------------- no call on bad input


def _corrupt_png() -> bytes:
    data = image_bytes("PNG", size=(64, 64))
    return data[: len(data) // 2]


def _truncated_jpeg() -> bytes:
    data = noisy_image((64, 64), "JPEG")
    return data[: len(data) // 2]


BAD_CALLS: list[tuple[str, Callable[[NovaEmbeddings, Path], object], type[Exception]]] = [
    ("empty text", lambda e, _: e.embed_text(""), InvalidInputError),
    ("blank text", lambda e, _: e.embed_text("  \n\t"), InvalidInputError),
    ("None text", lambda e, _: e.embed_text(None), InvalidInputError),  # type: ignore[arg-type]
    ("bytes text", lambda e, _: e.embed_text(b"abc"), InvalidInputError),  # type: ignore[arg-type]
    ("int text", lambda e, _: e.embed_text(5), InvalidInputError),  # type: ignore[arg-type]
    ("text too long", lambda e, _: e.embed_text("a" * 50_001), InvalidInputError),
    ("bad purpose", lambda e, _: e.embed_text("a", purpose="SEARCH"), InvalidInputError),
    ("lower purpose", lambda e, _: e.embed_text("a", purpose="generic_index"), InvalidInputError),
    ("bad dimension", lambda e, _: e.embed_text("a", dimension=512), InvalidInputError),
    ("str dimension", lambda e, _: e.embed_text("a", dimension="256"), InvalidInputError),  # type: ignore[arg-type]
    ("bool dimension", lambda e, _: e.embed_text("a", dimension=True), InvalidInputError),
    ("bad truncation", lambda e, _: e.embed_text("a", truncation="MIDDLE"), InvalidInputError),  # type: ignore[arg-type]
    ("texts is a str", lambda e, _: e.embed_texts("abc"), InvalidInputError),
    (
        "one bad text in a batch",
        lambda e, _: e.embed_texts(["ok", "fine", "", "ok"]),
        InvalidInputError,
    ),
    ("zero-length image", lambda e, _: e.embed_image(b""), UnsupportedMediaError),
    ("not an image", lambda e, _: e.embed_image(b"hello world"), UnsupportedMediaError),
    ("corrupt png", lambda e, _: e.embed_image(_corrupt_png()), UnsupportedMediaError),
    ("truncated jpeg", lambda e, _: e.embed_image(_truncated_jpeg()), UnsupportedMediaError),
    ("missing file", lambda e, p: e.embed_image(p / "missing.png"), InvalidInputError),
    ("directory", lambda e, p: e.embed_image(p), InvalidInputError),
    ("image wrong type", lambda e, _: e.embed_image(3.5), InvalidInputError),  # type: ignore[arg-type]
    (
        "bad detail level",
        lambda e, _: e.embed_image(image_bytes(), detail_level="HIGH"),  # type: ignore[arg-type]
        InvalidInputError,
    ),
    (
        "format= for local",
        lambda e, _: e.embed_image(image_bytes(), format="png"),
        InvalidInputError,
    ),
    ("bad s3 uri", lambda e, _: e.embed_image("s3://A_B/x.png"), InvalidInputError),
    (
        "s3 unknown image format",
        lambda e, _: e.embed_image("s3://bkt/x.tiff"),
        UnsupportedMediaError,
    ),
    (
        "bad bucket owner",
        lambda e, _: e.embed_image(S3Source("s3://bkt/x.png", bucket_owner="me")),
        InvalidInputError,
    ),
    (
        "one bad image in a batch",
        lambda e, _: e.embed_images([image_bytes(), b"junk", image_bytes()]),
        UnsupportedMediaError,
    ),
    ("unknown audio", lambda e, _: e.embed_audio(b"\x00\x01\x02" * 50), UnsupportedMediaError),
    ("video as audio", lambda e, _: e.embed_audio(MP4), UnsupportedMediaError),
    ("audio as video", lambda e, _: e.embed_video(MP3), UnsupportedMediaError),
    ("flac format", lambda e, _: e.embed_audio(MP3, format="flac"), UnsupportedMediaError),
    ("format mismatch", lambda e, _: e.embed_audio(OGG, format="mp3"), UnsupportedMediaError),
    ("empty audio", lambda e, _: e.embed_audio(b""), UnsupportedMediaError),
    ("audio too long", lambda e, _: e.embed_audio(wav_bytes(31.0)), UnsupportedMediaError),
    ("s3 audio no ext", lambda e, _: e.embed_audio("s3://bkt/clip"), UnsupportedMediaError),
    (
        "bad embedding mode",
        lambda e, _: e.embed_video(MP4, embedding_mode="BOTH"),  # type: ignore[call-overload]
        InvalidInputError,
    ),
    (
        "avi video",
        lambda e, _: e.embed_video(b"RIFF\x00\x00\x00\x00AVI LIST"),
        UnsupportedMediaError,
    ),
    ("missing pdf", lambda e, p: e.embed_document(p / "m.pdf"), InvalidInputError),
    ("not a pdf", lambda e, _: e.embed_document(b"%PDF-garbage"), InvalidInputError),
]


@pytest.mark.parametrize(
    ("case", "call", "error"), BAD_CALLS, ids=[name for name, _, _ in BAD_CALLS]
)
def test_bad_input_raises_before_any_call(
    case: str,
    call: Callable[[NovaEmbeddings, Path], object],
    error: type[Exception],
    tmp_path: Path,
) -> None:
    emb, fake = nova()
    with pytest.raises(error):
        call(emb, tmp_path)
    assert fake.calls == 0, case
    assert emb.calls == 0


def test_inline_audio_over_limit_refused_with_hint() -> None:
    emb, fake = nova(max_inline_bytes=2048)
    with pytest.raises(UnsupportedMediaError, match="s3://"):
        emb.embed_audio(MP3 + b"\x00" * 4000)
    assert fake.calls == 0


# --------------------------------------------------------------------------- audio / video sniffing


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(MP3, "mp3"), (MP3_NO_TAG, "mp3"), (OGG, "ogg"), (wav_bytes(0.5), "wav")],
)
def test_audio_sniffing(data: bytes, fmt: str) -> None:
    assert prepare_audio(data).format == fmt


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (MP4, "mp4"),
        (MOV, "mov"),
        (GP3, "3gp"),
        (WEBM, "webm"),
        (MKV, "mkv"),
        (FLV, "flv"),
        (MPEG, "mpeg"),
        (WMV, "wmv"),
    ],
)
def test_video_sniffing(data: bytes, fmt: str) -> None:
    assert prepare_video(data).format == fmt


def test_explicit_format_within_container_family_wins() -> None:
    assert prepare_video(MP4, format="mov").format == "mov"
    assert prepare_video(MPEG, format="mpg").format == "mpg"
    with pytest.raises(UnsupportedMediaError):
        prepare_video(MP4, format="webm")


def test_explicit_format_for_unsniffable_bytes() -> None:
    assert prepare_audio(b"\x00" * 64, format="MP3").format == "mp3"


def test_wav_duration_checked() -> None:
    assert wav_duration(wav_bytes(2.5)) == pytest.approx(2.5)
    assert prepare_audio(wav_bytes(30.0)).format == "wav"
    assert wav_duration(MP3) is None


def test_s3_sources() -> None:
    p = prepare_video("s3://media/clips/a.MKV")
    assert p.format == "mkv" and p.s3 == S3Source("s3://media/clips/a.MKV") and p.data is None
    assert p.source() == {"s3Location": {"uri": "s3://media/clips/a.MKV"}}
    assert prepare_audio(S3Source("s3://media/x", "123456789012"), format="wav").source() == {
        "s3Location": {"uri": "s3://media/x", "bucketOwner": "123456789012"}
    }
    assert S3Source("s3://media/a/b/c.png").key == "a/b/c.png"
    with pytest.raises(InvalidInputError):
        S3Source("https://media/a.png")
    with pytest.raises(InvalidInputError):
        S3Source("s3://" + "a" * 64 + "/x")


_SEED_IMAGES = [
    image_bytes(f, size=(16, 12)) for f in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
]


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(0, len(_SEED_IMAGES) - 1),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
def test_damaged_images_give_a_typed_error_or_a_valid_image(
    index: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_SEED_IMAGES[index][: max(cut, 0) or None])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        prepared = prepare_image(bytes(data))
    except UnsupportedMediaError:
        return
    assert prepared.format in ("png", "jpeg", "gif", "webp")
    assert prepared.data is not None
    with Image.open(io.BytesIO(prepared.data)) as img:
        img.load()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), kind=st.sampled_from(["audio", "video"]))
def test_random_bytes_as_media_give_a_typed_error_or_a_known_format(data: bytes, kind: str) -> None:
    prepare = prepare_audio if kind == "audio" else prepare_video
    try:
        prepared = prepare(data)
    except UnsupportedMediaError:
        return
    assert prepared.format in (AUDIO_FORMATS if kind == "audio" else VIDEO_FORMATS)
