"""Tiny media files generated on the spot for the live Nova tests: no fixtures, no encoders.

* :func:`wav` - 16-bit mono PCM WAV (stdlib ``wave``), a sine tone;
* :func:`mov` - a QuickTime movie: Motion-JPEG frames (Pillow) plus a 16-bit PCM sound track,
  written box by box (ISO/IEC 14496-12 / QuickTime File Format), so it needs no ffmpeg;
* :func:`png` - a small picture of a red ball on a white floor.

Each function returns the bytes and the duration in seconds (what the cost meter is told).
"""

from __future__ import annotations

import io
import math
import struct
import wave

from PIL import Image, ImageDraw

__all__ = ["mov", "png", "wav"]

SAMPLE_RATE = 16_000


def _tone(seconds: float, hz: float = 440.0) -> bytes:
    n = int(SAMPLE_RATE * seconds)
    return b"".join(
        struct.pack("<h", int(12_000 * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)))
        for i in range(n)
    )


def wav(seconds: float = 1.0) -> tuple[bytes, float]:
    """A sine tone as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(_tone(seconds))
    return out.getvalue(), seconds


def _frame(i: int, frames: int, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    x = int((size - size // 3) * i / max(1, frames - 1))
    draw.rectangle((0, size * 3 // 4, size, size), fill=(120, 90, 60))
    draw.ellipse((x, size // 3, x + size // 3, size * 2 // 3), fill=(220, 30, 30))
    return img


def png(size: int = 128) -> bytes:
    """A red ball on a brown floor, PNG."""
    out = io.BytesIO()
    _frame(0, 1, size).save(out, format="PNG")
    return out.getvalue()


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _tkhd(track: int, duration: int, *, audio: bool, size: int) -> bytes:
    return _full(
        b"tkhd",
        0,
        0x3,
        struct.pack(">IIIII", 0, 0, track, 0, duration),
        b"\0" * 8,
        struct.pack(">hhhh", 0, 0, 0x0100 if audio else 0, 0),
        _MATRIX,
        struct.pack(">II", 0 if audio else size << 16, 0 if audio else size << 16),
    )


def _mdhd(timescale: int, duration: int) -> bytes:
    return _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, duration, 0x55C4, 0))


def _hdlr(component: bytes, subtype: bytes, name: bytes) -> bytes:
    return _full(b"hdlr", 0, 0, component, subtype, b"\0" * 12, bytes([len(name)]) + name)


def _dinf() -> bytes:
    return _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"alis", 0, 1)))


def _table(kind: bytes, rows: list[tuple[int, ...]], fmt: str) -> bytes:
    return _full(kind, 0, 0, struct.pack(">I", len(rows)), *(struct.pack(fmt, *r) for r in rows))


def mov(seconds: float = 1.0, *, fps: int = 4, size: int = 128) -> tuple[bytes, float]:
    """A QuickTime movie: a red ball rolling right, Motion-JPEG, with a sine tone sound track."""
    frames = max(1, round(seconds * fps))
    jpegs = []
    for i in range(frames):
        out = io.BytesIO()
        _frame(i, frames, size).save(out, format="JPEG", quality=80)
        jpegs.append(out.getvalue())
    audio = _tone(frames / fps)
    samples = len(audio) // 2

    ftyp = _box(b"ftyp", b"qt  ", struct.pack(">I", 0x200), b"qt  ")
    mdat_start = len(ftyp) + 8
    offsets = []
    position = mdat_start
    for jpeg in jpegs:
        offsets.append(position)
        position += len(jpeg)
    audio_offset = position
    mdat = _box(b"mdat", *jpegs, audio)

    movie_ms = frames * 1000 // fps
    video_entry = _box(
        b"jpeg",
        b"\0" * 6,
        struct.pack(">H", 1),
        struct.pack(">HH4sII", 0, 0, b"appl", 0, 512),
        struct.pack(">HHIIIH", size, size, 72 << 16, 72 << 16, 0, 1),
        bytes([10]) + b"Photo-JPEG" + b"\0" * 21,
        struct.pack(">hh", 24, -1),
    )
    video = _box(
        b"trak",
        _tkhd(1, movie_ms, audio=False, size=size),
        _box(
            b"mdia",
            _mdhd(fps, frames),
            _hdlr(b"mhlr", b"vide", b"VideoHandler"),
            _box(
                b"minf",
                _full(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0)),
                _hdlr(b"dhlr", b"alis", b"DataHandler"),
                _dinf(),
                _box(
                    b"stbl",
                    _full(b"stsd", 0, 0, struct.pack(">I", 1), video_entry),
                    _table(b"stts", [(frames, 1)], ">II"),
                    _table(b"stsc", [(1, 1, 1)], ">III"),
                    _full(
                        b"stsz",
                        0,
                        0,
                        struct.pack(">II", 0, frames),
                        *(struct.pack(">I", len(j)) for j in jpegs),
                    ),
                    _table(b"stco", [(o,) for o in offsets], ">I"),
                ),
            ),
        ),
    )
    sound_entry = _box(
        b"sowt",
        b"\0" * 6,
        struct.pack(">H", 1),
        struct.pack(">HHI", 0, 0, 0),
        struct.pack(">HHhHI", 1, 16, 0, 0, SAMPLE_RATE << 16),
    )
    sound = _box(
        b"trak",
        _tkhd(2, movie_ms, audio=True, size=size),
        _box(
            b"mdia",
            _mdhd(SAMPLE_RATE, samples),
            _hdlr(b"mhlr", b"soun", b"SoundHandler"),
            _box(
                b"minf",
                _full(b"smhd", 0, 0, struct.pack(">hH", 0, 0)),
                _hdlr(b"dhlr", b"alis", b"DataHandler"),
                _dinf(),
                _box(
                    b"stbl",
                    _full(b"stsd", 0, 0, struct.pack(">I", 1), sound_entry),
                    _table(b"stts", [(samples, 1)], ">II"),
                    _table(b"stsc", [(1, samples, 1)], ">III"),
                    _full(b"stsz", 0, 0, struct.pack(">II", 1, samples)),
                    _table(b"stco", [(audio_offset,)], ">I"),
                ),
            ),
        ),
    )
    mvhd = _full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, movie_ms),
        struct.pack(">IH", 0x10000, 0x0100),
        b"\0" * 10,
        _MATRIX,
        b"\0" * 24,
        struct.pack(">I", 3),
    )
    moov = _box(b"moov", mvhd, video, sound)
    return ftyp + mdat + moov, frames / fps
