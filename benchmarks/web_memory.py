"""Memory of a real ``crossmodal serve`` under concurrent image uploads (Linux only).

``python benchmarks/web_memory.py [--uploads 8] [--side 6300] [--rounds 2] [--budget-mb 256 ...]``

For each decode budget (``--decode-memory-mb``) it starts ``crossmodal serve --demo`` (offline
embedder, local store) in a subprocess and reads its resident memory (``/proc/PID/status``) when
idle, at the peak of ``uploads`` concurrent uploads of a ``side`` x ``side`` RGBA PNG (one colour:
about 166 KiB on the wire for 6300 px, 40 MP once decoded), and once it settles after the last
answer. Several budgets run one after the other, so their peaks compare side by side.
``tests/test_web_memory.py`` asserts the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


def solid_rgba_png(side: int, rgba: tuple[int, int, int, int] = (200, 30, 30, 255)) -> bytes:
    """A ``side`` x ``side`` RGBA PNG of one colour, compressed row by row (little memory here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgba) * side
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A memory field of ``/proc/PID/status`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM (Linux >= 4.0); False when the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def multipart_upload(port: int, png: bytes, timeout: float) -> tuple[int, bytes]:
    """POST ``png`` as the ``image`` field of /api/search; the status and body."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="mode"\r\n\r\nimage\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/api/search",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass(frozen=True)
class Figures:
    """Resident memory of the server, in MiB."""

    idle: float
    peak: float
    after: float
    statuses: tuple[int, ...]
    seconds: float

    @property
    def peak_over_idle(self) -> float:
        return self.peak - self.idle

    @property
    def after_over_idle(self) -> float:
        return self.after - self.idle

    def __str__(self) -> str:
        return (
            f"idle {self.idle:.0f} MiB, peak {self.peak:.0f} MiB (+{self.peak_over_idle:.0f}), "
            f"after {self.after:.0f} MiB (+{self.after_over_idle:.0f}); "
            f"{len(self.statuses)} uploads answered {sorted(set(self.statuses))} "
            f"in {self.seconds:.1f} s"
        )


class Server:
    """``crossmodal serve --demo`` in a subprocess (offline embedder, local store)."""

    def __init__(self, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "crossmodal_search.cli",
            "serve",
            "--demo",
            "--demo-dir",
            str(directory),
            "--embedder",
            "offline",
            "--dimension",
            "256",
            "--port",
            str(self.port),
            *extra_args,
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"the server exited: {out}\n{err}")
            try:
                status, body = get(self.port, "/healthz")
                if status == 200 and json.loads(body)["status"] == "ok":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

    def stop(self) -> str:
        """Stop the server; its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def settle(pid: int, *, seconds: float = 0.5) -> float:
    """The RSS (MiB) once it stops changing by more than 1 MiB over ``seconds``."""
    last = rss_kb(pid) / 1024
    for _ in range(20):
        time.sleep(seconds)
        now = rss_kb(pid) / 1024
        if abs(now - last) < 1:
            return now
        last = now
    return last


def measure(server: Server, png: bytes, uploads: int, *, timeout: float = 300) -> Figures:
    """Idle, peak and settled RSS of ``server`` around ``uploads`` concurrent uploads."""
    pid = server.proc.pid
    # Warm up (first search, lazy imports, thread pool) with a small upload of the same kind.
    status, body = multipart_upload(server.port, solid_rgba_png(64), timeout)
    assert status == 200, body
    idle = settle(pid)
    peak_kb = rss_kb(pid)
    exact_peak = reset_peak(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_kb
        while not done.is_set():
            peak_kb = max(peak_kb, rss_kb(pid))
            time.sleep(0.005)

    statuses: list[int] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            statuses.append(multipart_upload(server.port, png, timeout)[0])
        except BaseException as exc:
            errors.append(exc)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=upload) for _ in range(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if errors:
        raise errors[0]
    peak = max(peak_kb, rss_kb(pid, "VmHWM") if exact_peak else 0) / 1024
    after = settle(pid)
    return Figures(idle, peak, after, tuple(statuses), seconds)


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=8, help="concurrent uploads")
    parser.add_argument("--side", type=int, default=6300, help="the PNG's width and height")
    parser.add_argument("--rounds", type=int, default=2, help="bursts in a row")
    parser.add_argument(
        "--budget-mb", type=int, action="append", help="--decode-memory-mb (repeatable)"
    )
    args = parser.parse_args(argv)
    png = solid_rgba_png(args.side)
    print(f"{args.uploads} concurrent uploads of a {args.side}x{args.side} RGBA PNG")
    print(f"({len(png) / 1024:.0f} KiB, {args.side * args.side * 4 / MB:.0f} MiB decoded)")
    for budget in args.budget_mb or [256]:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), ["--decode-memory-mb", str(budget)])
            try:
                server.wait_ready()
                for round_ in range(1, args.rounds + 1):
                    figures = measure(server, png, args.uploads)
                    print(f"budget {budget} MiB, burst {round_}: {figures}")
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
