"""``crossmodal serve``: option wiring in process, and the real command in a subprocess."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from PIL import Image

from crossmodal_search.cli import build_parser, main
from crossmodal_search.cli._serve import build_app
from crossmodal_search.datasets import SAMPLE_QUERIES

pytest.importorskip("fastapi", reason="needs the 'web' extra")

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette asks for httpx2 instead of httpx; the client behaves the same for these tests.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TEXT_QUERY, IMAGE_QUERY, *_ = SAMPLE_QUERIES


def test_serve_is_a_registered_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--image-root", "--demo", "--store", "--embedder"):
        assert option in out


def test_s3_images_option_links_photos_through_s3(tmp_path: Path) -> None:
    argv = ["serve", "--demo", "--demo-dir", str(tmp_path), "--embedder", "offline"]
    args = build_parser().parse_args([*argv, "--dimension", "256", "--s3-images"])
    assert args.s3_image_minutes == 60
    with contextlib.ExitStack() as stack:
        app, description = build_app(args, stack)
        assert "images in S3: presigned links valid 60 min" in description
        with TestClient(app) as client:
            assert "https://*.amazonaws.com" in client.get("/").headers["content-security-policy"]
            # The demo's local photos are still served from its image root.
            hits = client.post("/api/search", json={"text": TEXT_QUERY.text}).json()["results"]
            assert hits[0]["image_url"].startswith("/images/")
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--s3-images", "--s3-image-minutes", "0"])


def test_demo_dir_keeps_catalog_and_store_and_restarts_without_reindexing(
    tmp_path: Path,
) -> None:
    argv = ["serve", "--demo", "--demo-dir", str(tmp_path), "--embedder", "offline"]
    args = build_parser().parse_args([*argv, "--dimension", "256"])
    with contextlib.ExitStack() as stack:
        app, description = build_app(args, stack)
        assert f"local:{tmp_path / 'store'}" in description
        assert f"images: served from {tmp_path / 'images' / 'small'}" in description
        with TestClient(app) as client:
            response = client.post("/api/search", json={"text": TEXT_QUERY.text})
            hits = response.json()["results"]
            assert hits[0]["product_id"] == TEXT_QUERY.expected
            # The demo's image root is the sample catalog's images.
            assert client.get(hits[0]["image_url"]).status_code == 200
    assert (tmp_path / "store").is_dir()
    args = build_parser().parse_args([*argv, "--dimension", "256"])
    with contextlib.ExitStack() as stack:
        _, description = build_app(args, stack)
        assert "0 indexed" in description


def test_explicit_store_is_honoured_with_demo(tmp_path: Path) -> None:
    store = tmp_path / "mine"
    argv = ["serve", "--demo", "--store", f"local:{store}", "--embedder", "offline"]
    args = build_parser().parse_args([*argv, "--dimension", "256"])
    with contextlib.ExitStack() as stack:
        _, description = build_app(args, stack)
        assert f"local:{store}" in description
    assert store.is_dir()


def test_serving_an_existing_store_does_not_take_its_write_lock(tmp_path: Path) -> None:
    # A live page must not stop `crossmodal index` from updating the same store.
    from crossmodal_search.datasets import (
        load_abo,
        write_sample_catalog,
    )
    from crossmodal_search.embeddings import OfflineEmbedder
    from crossmodal_search.search import CrossmodalSearcher
    from crossmodal_search.stores import LocalVectorStore

    root = write_sample_catalog(tmp_path / "catalog")
    store_dir = tmp_path / "store"
    with LocalVectorStore(store_dir, dimension=256) as store:
        CrossmodalSearcher(OfflineEmbedder(dimension=256), store).index(load_abo(root).products)
    argv = ["serve", "--store", f"local:{store_dir}", "--embedder", "offline", "--dimension", "256"]
    with contextlib.ExitStack() as stack:
        app, _ = build_app(build_parser().parse_args(argv), stack)
        # A writer can open the store while the page serves it.
        with LocalVectorStore(store_dir, dimension=256) as writer:
            assert len(writer) > 0
        with TestClient(app) as client:
            response = client.post("/api/search", json={"text": TEXT_QUERY.text})
            assert response.json()["results"][0]["product_id"] == TEXT_QUERY.expected


def test_serving_a_store_that_does_not_exist_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing-here"
    code = main(["serve", "--store", f"local:{missing}", "--embedder", "offline"])
    assert code == 1
    assert "no index" in capsys.readouterr().err
    assert not missing.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def test_crossmodal_serve_demo_end_to_end(tmp_path: Path) -> None:
    """The real command: serves the demo, answers a photo search, cleans up on SIGTERM."""
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = ["serve", "--demo", "--port", str(port), "--embedder", "offline"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossmodal_search.cli", *command, "--dimension", "256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                assert json.loads(_get(base + "/healthz"))["status"] == "ok"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        demo_dirs = list(tmp_path.glob("crossmodal-demo-*"))
        assert len(demo_dirs) == 1
        photo = IMAGE_QUERY.image_path(demo_dirs[0])
        assert photo is not None
        body = json.dumps(
            {"image": base64.b64encode(photo.read_bytes()).decode(), "mode": "image"}
        ).encode()
        request = urllib.request.Request(
            base + "/api/search", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            hits = json.loads(response.read())["results"]
        assert hits[0]["product_id"] == IMAGE_QUERY.expected
        assert _get(base + hits[0]["image_url"])[:2] == b"\xff\xd8"
        assert b"<form" in _get(base + "/")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert "serving on" in out, err
    # SIGTERM shuts down cleanly and removes the temporary demo catalog.
    assert list(tmp_path.glob("crossmodal-demo-*")) == []


def test_decode_memory_option_sets_the_servers_budget(tmp_path: Path) -> None:
    argv = ["serve", "--demo", "--demo-dir", str(tmp_path), "--embedder", "offline"]
    args = build_parser().parse_args([*argv, "--dimension", "256", "--decode-memory-mb", "2"])
    with contextlib.ExitStack() as stack:
        app, _ = build_app(args, stack)
        with TestClient(app) as client:
            big = io.BytesIO()
            Image.new("RGB", (1000, 1000), "red").save(big, format="PNG")
            response = client.post("/api/search", files={"image": ("a.png", big.getvalue())})
            assert response.status_code == 413
            assert "at most 2 MiB" in response.json()["error"]["message"]
    for bad in ("0", "-1", "nan", "lots"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*argv, "--decode-memory-mb", bad])


def test_a_busy_port_fails_with_one_line_before_anything_is_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--demo", "--demo-dir", str(tmp_path / "demo"), "--port", str(port)]
        code = main([*argv, "--embedder", "offline", "--dimension", "256"])
    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""  # no description, no "serving on"
    (line,) = err.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert f"--port {port + 1}" in line
    assert not (tmp_path / "demo").exists()  # the demo was not even written


@pytest.mark.parametrize(
    ("host", "port", "says"),
    [("127.0.0.1", 70000, "not a port number"), ("192.0.2.1", 0, "not an address of this")],
)
def test_an_impossible_address_fails_with_one_line(
    host: str, port: int, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--host", host, "--port", str(port), "--embedder", "offline"])
    assert code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line
