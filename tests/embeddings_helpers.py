"""Shared helpers for the embeddings tests: tiny media files and a Nova client on FakeBedrock."""

from __future__ import annotations

import io
import struct
from typing import Any

from PIL import Image

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.testing import FakeBedrock


class RecordingSleep:
    """A RetryPolicy sleep that records the delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def fast_policy(max_attempts: int = 6, **kw: Any) -> tuple[RetryPolicy, RecordingSleep]:
    sleep = RecordingSleep()
    return RetryPolicy(max_attempts=max_attempts, sleep=sleep, **kw), sleep


def nova(fake: FakeBedrock | None = None, **kw: object) -> tuple[NovaEmbeddings, FakeBedrock]:
    fake = fake or FakeBedrock()
    kw.setdefault("retry_policy", fast_policy()[0])
    return NovaEmbeddings(client=fake.client(), **kw), fake  # type: ignore[arg-type]


def image_bytes(
    fmt: str = "PNG",
    colour: tuple[int, ...] = (200, 30, 30),
    size: tuple[int, int] = (40, 30),
    mode: str = "RGB",
    **save: object,
) -> bytes:
    img = Image.new(mode, size, colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def noisy_image(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    """An incompressible image (random pixels), so its encoded size grows with its area."""
    import numpy as np

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format=fmt)
    return buf.getvalue()


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    """A silent mono 16-bit PCM WAV file of the given duration."""
    n = int(seconds * rate)
    data = b"\x00\x00" * n
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(data)) + b"WAVE" + chunks + data


MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 200
MP3_NO_TAG = b"\xff\xfb\x90\x64" + b"\x00" * 200
OGG = b"OggS\x00\x02" + b"\x00" * 200
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 200
MOV = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 200
GP3 = b"\x00\x00\x00\x14ftyp3gp5\x00\x00\x00\x003gp5" + b"\x00" * 200
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + b"\x00" * 200
MKV = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska" + b"\x00" * 200
FLV = b"FLV\x01\x05\x00\x00\x00\x09" + b"\x00" * 200
MPEG = b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01" + b"\x00" * 200
WMV = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c" + b"\x00" * 200
