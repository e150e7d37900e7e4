"""The page never goes stale: `crossmodal serve` over a local store answers for products that
`crossmodal index` writes while it runs (two real processes, a real HTTP server)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

#: How soon a product indexed while the page runs must be found (it is one stat per request
#: in practice; the margin is for a loaded machine).
NEW_PRODUCT_WITHIN_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _crossmodal(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossmodal_search.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _catalog(path: Path, products: list[tuple[str, str]]) -> Path:
    lines = [{"product_id": pid, "text": text} for pid, text in products]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_a_product_indexed_while_the_page_runs_is_searchable(tmp_path: Path) -> None:
    store = f"local:{tmp_path / 'shop'}"
    common = ["--store", store, "--embedder", "offline", "--dimension", "256"]
    first = _catalog(tmp_path / "a.jsonl", [("mug", "Blue ceramic mug")])
    assert _crossmodal("index", str(first), *common, cwd=tmp_path).returncode == 0

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "crossmodal_search.cli", "serve", "--port", str(port), *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
            assert client.get("/api/products/lamp").status_code == 404

            more = [("mug", "Blue ceramic mug"), ("lamp", "Brass reading lamp")]
            second = _catalog(tmp_path / "b.jsonl", more)
            indexed = _crossmodal("index", str(second), *common, cwd=tmp_path)
            assert indexed.returncode == 0, indexed.stderr
            written = time.monotonic()

            while client.get("/api/products/lamp").status_code != 200:
                assert time.monotonic() - written < NEW_PRODUCT_WITHIN_SECONDS
                time.sleep(0.05)
            hits = client.post("/api/search", json={"text": "brass lamp", "top_k": 2}).json()
            assert hits["results"][0]["product_id"] == "lamp"
    finally:
        server.terminate()
        server.communicate(timeout=30)
