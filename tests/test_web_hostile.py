"""Hostile requests against a live server: every one gets a JSON 4xx in the ErrorResponse shape.

Each request goes byte for byte over a socket to uvicorn (no client-side normalisation of paths,
lengths or encodings). Whatever is sent, the answer is a 4xx with ``application/json``, the
``{"error": {"type", "message"}}`` shape, the security headers, no traceback, and the server keeps
answering ``/healthz``. Unexpected failures, AWS errors and echoed input are checked after.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from crossmodal_search import RetryPolicy
from crossmodal_search.datasets import (
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import NovaEmbeddings, OfflineEmbedder
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import LocalVectorStore
from crossmodal_search.testing import FakeBedrock

pytest.importorskip("fastapi", reason="needs the 'web' extra")

from starlette.exceptions import StarletteDeprecationWarning

from crossmodal_search.web import create_app
from tests.web_helpers import DIMENSION, build_demo_searcher, live_server, png_declaring

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(base_url: str, raw: bytes) -> Answer:
    """Send ``raw`` as the whole request; the answer (read until the server closes)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(raw)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Answer(int(lines[0].split(" ", 2)[1]), {k.lower(): v for k, v in headers.items()}, body)


@dataclass(frozen=True)
class Hostile:
    """One hostile request: method, raw path, body and headers (Content-Length added if absent)."""

    name: str
    method: str = "POST"
    path: str = "/api/search"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def raw(self) -> bytes:
        headers = {"Host": "shop", "Connection": "close", **self.headers}
        if self.body or self.method in ("POST", "PUT"):
            headers.setdefault("Content-Length", str(len(self.body)))
        head = f"{self.method} {self.path} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode("latin-1") + b"\r\n" + self.body


def as_json(name: str, body: bytes | str | object) -> Hostile:
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    return Hostile(name, body=data, headers={"Content-Type": "application/json"})


def multipart(name: str, parts: list[tuple[str, bytes, str | None]]) -> Hostile:
    """``parts``: (field, content, filename or None for a plain field)."""
    boundary = "hostileboundary"
    body = b""
    for field_name, content, filename in parts:
        disposition = f'form-data; name="{field_name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: image/png\r\n"
        body += b"\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return Hostile(
        name, body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )


def image_upload(name: str, content: bytes) -> Hostile:
    return multipart(name, [("image", content, "photo.png")])


def b64_image(name: str, content: bytes) -> Hostile:
    return as_json(name, {"image": base64.b64encode(content).decode()})


def nested(depth: int, leaf: str = "1", opener: str = '{"a":', closer: str = "}") -> str:
    return opener * depth + leaf + closer * depth


def _png(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bad_crc_png() -> bytes:
    data = bytearray(_png())
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _png_chunks_only() -> bytes:
    header = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return header + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + crc


PNG = _png()
DIGITS = "9" * 4500

CORPUS: list[Hostile] = [
    # --- numbers ----------------------------------------------------------------------------
    as_json("top_k 4500 digits", f'{{"text": "red", "top_k": {DIGITS}}}'),
    as_json("top_k -4500 digits", f'{{"text": "red", "top_k": -{DIGITS}}}'),
    as_json("top_k 1e400", '{"text": "red", "top_k": 1e400}'),
    as_json("top_k float", '{"text": "red", "top_k": 2.5}'),
    as_json("top_k string", '{"text": "red", "top_k": "many"}'),
    as_json("weight 1e400", '{"text": "red", "text_weight": 1e400}'),
    as_json("weight NaN", '{"text": "red", "text_weight": NaN}'),
    as_json("weight Infinity", '{"text": "red", "text_weight": Infinity}'),
    as_json("weight -Infinity", '{"text": "red", "text_weight": -Infinity}'),
    as_json("filter value 5000 digits", f'{{"text": "red", "filter": {{"size": {DIGITS}}}}}'),
    as_json("filter $lt NaN", '{"text": "red", "filter": {"price": {"$lt": NaN}}}'),
    as_json("where 5000 digits", {"text": "red", "where": "size=" + DIGITS}),
    # --- nesting ----------------------------------------------------------------------------
    as_json("filter objects 100000 deep", '{"text": "red", "filter": ' + nested(100_000) + "}"),
    as_json(
        "filter lists 100000 deep",
        '{"text": "red", "filter": {"a": ' + nested(100_000, "1", "[", "]") + "}}",
    ),
    as_json("body 200 deep", nested(200)),
    as_json("body 100000 deep", nested(100_000, "1", "[", "]")),
    as_json(
        "filter $and 70 deep",
        {"text": "red", "filter": json.loads(nested(70, '{"c": 1}', '{"$and": [', "]}"))},
    ),
    as_json("filter json string 100000 deep", {"text": "red", "filter": nested(100_000)}),
    # --- sizes ------------------------------------------------------------------------------
    as_json("text 1 MB", {"text": "x" * 1_000_000}),
    as_json("where 1 MB", {"text": "red", "where": "k=" + "v" * 1_000_000}),
    as_json("unknown key 1 MB", {"text": "red", "k" * 1_000_000: 1}),
    as_json("filter key 100 kB", {"text": "red", "filter": {"k" * 100_000: 1}}),
    as_json("filter 5000 keys", {"text": "red", "filter": {f"key{i}": i for i in range(5000)}}),
    as_json("mode 1 MB", {"text": "red", "mode": "m" * 1_000_000}),
    Hostile(
        "declared body over the limit",
        body=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "15000000"},
    ),
    Hostile(
        "content-length 20 digits",
        body=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "9" * 20},
    ),
    # --- encodings --------------------------------------------------------------------------
    as_json("invalid UTF-8", b'{"text": "red \xff\xfe dress"}'),
    as_json("UTF-16 body", '{"text": "red"}'.encode("utf-16")),
    as_json("latin-1 body", '{"text": "caf\xe9"}'.encode("latin-1")),
    as_json("lone surrogate in text", '{"text": "red \\ud800"}'),
    as_json("lone surrogate in filter key", '{"text": "red", "filter": {"\\udfff": 1}}'),
    as_json("NUL in mode", '{"text": "red", "mode": "text\\u0000"}'),
    as_json("NUL in where key", {"text": "red", "where": "$\x00=1"}),
    # --- JSON shapes ------------------------------------------------------------------------
    as_json("truncated JSON", '{"text": "red"'),
    as_json("empty JSON body", b""),
    as_json("null body", "null"),
    as_json("list body", "[1, 2]"),
    as_json("string body", '"red dress"'),
    as_json("number body", "42"),
    as_json("text is a number", {"text": 5}),
    as_json("text is an object", {"text": {"$gt": ""}}),
    as_json("fusion null", {"text": "red", "fusion": None}),
    as_json("mode traversal", {"text": "red", "mode": "../../etc/passwd"}),
    as_json("no query", {"top_k": 3}),
    as_json("blank text", {"text": " \t\n "}),
    as_json("filter $regex", {"text": "red", "filter": {"color": {"$regex": ".*"}}}),
    as_json("filter $where code", {"text": "red", "filter": {"$where": "sleep(10)"}}),
    as_json("filter empty $or", {"text": "red", "filter": {"$or": []}}),
    as_json("filter bad JSON string", {"text": "red", "filter": "{oops"}),
    as_json("filter is a list", {"text": "red", "filter": [{"a": 1}]}),
    as_json("where $key", {"text": "red", "where": "$or=1"}),
    # --- images -----------------------------------------------------------------------------
    as_json("image not base64", {"image": "not base64 at all!"}),
    as_json("image empty", {"image": ""}),
    b64_image("image garbage", b"\x00\x01garbage" * 100),
    b64_image("image truncated PNG", PNG[: len(PNG) // 2]),
    b64_image("image PNG bomb", png_declaring(100_000, 100_000)),
    b64_image("image BMP", b"BM" + b"\x00" * 100),
    b64_image("image SVG", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    b64_image("image bad IHDR CRC", _bad_crc_png()),
    image_upload("upload HTML as PNG", b"<html><script>alert(1)</script></html>"),
    image_upload("upload truncated PNG", PNG[:40]),
    image_upload("upload PNG without pixels", _png_chunks_only()),
    image_upload("upload empty", b""),
    image_upload("upload PNG bomb", png_declaring(10_000, 10_000)),
    image_upload("upload JPEG declaring 65500 px", _jpeg_declaring(65_500, 65_500)),
    image_upload("upload GIF polyglot", b"GIF89a/*" + b"\x00" * 20 + b"*/=alert(1);"),
    image_upload("upload PDF", b"%PDF-1.7\n" + b"\x00" * 100),
    # --- forms and content types ------------------------------------------------------------
    Hostile("text/plain", body=b"red dress", headers={"Content-Type": "text/plain"}),
    Hostile("no content type", body=b'{"text": "red"}'),
    Hostile("xml", body=b"<search>red</search>", headers={"Content-Type": "application/xml"}),
    Hostile("form as JSON", body=b"text=red", headers={"Content-Type": "application/json"}),
    Hostile(
        "multipart no boundary", body=b"hello", headers={"Content-Type": "multipart/form-data"}
    ),
    Hostile(
        "multipart garbage",
        body=b"hello world",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    ),
    multipart("multipart image as text", [("image", b"abc", None)]),
    multipart("multipart two files", [("image", PNG, "a.png"), ("other", PNG, "b.png")]),
    multipart("multipart 100 fields", [(f"f{i}", b"1", None) for i in range(100)]),
    multipart("multipart top_k digits", [("text", b"red", None), ("top_k", DIGITS.encode(), None)]),
    multipart(
        "multipart filter 2000 deep",
        [("text", b"red", None), ("filter", nested(2000).encode(), None)],
    ),
    multipart("multipart duplicate text", [("text", b"red", None), ("text", b"blue", None)]),
    Hostile(
        "urlencoded top_k digits",
        body=f"text=red&top_k={DIGITS}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Hostile(
        "urlencoded image",
        body=b"image=abc",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    # --- methods, routes, ids, paths --------------------------------------------------------
    Hostile("GET search", method="GET"),
    Hostile("PUT search", method="PUT", body=b"{}", headers={"Content-Type": "application/json"}),
    Hostile("DELETE product", method="DELETE", path="/api/products/B0SAMPLE01"),
    Hostile("POST healthz", method="POST", path="/healthz"),
    Hostile("OPTIONS search", method="OPTIONS"),
    Hostile("unknown route", method="GET", path="/api/admin"),
    Hostile("docs disabled", method="GET", path="/docs"),
    Hostile("product id 12 kB", method="GET", path="/api/products/" + "a" * 12_000),
    Hostile("product id NUL", method="GET", path="/api/products/%00"),
    Hostile("product id traversal", method="GET", path="/api/products/..%2F..%2Fetc%2Fpasswd"),
    Hostile("product id injection", method="GET", path="/api/products/%27%20OR%201%3D1--"),
    Hostile("empty product id", method="GET", path="/api/products/"),
    Hostile("image traversal", method="GET", path="/images/../../etc/passwd"),
    Hostile("image encoded traversal", method="GET", path="/images/%2e%2e/%2e%2e/etc/passwd"),
    Hostile("image NUL", method="GET", path="/images/photo%00.jpg"),
    Hostile("image drive letter", method="GET", path="/images/C:%5Cwindows%5Cwin.ini"),
    Hostile("image absolute", method="GET", path="/images//etc/passwd"),
    Hostile("image not an image", method="GET", path="/images/index.php"),
    Hostile("image 12 kB path", method="GET", path="/images/" + "d/" * 6000 + "x.jpg"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    searcher, root = build_demo_searcher(tmp_path_factory.mktemp("catalog"))
    with live_server(create_app(searcher, image_root=root / "images" / "small")) as base_url:
        yield base_url


def test_the_corpus_is_large_and_named_uniquely() -> None:
    assert len(CORPUS) >= 60
    assert len({case.name for case in CORPUS}) == len(CORPUS)


def assert_clean_error(answer: Answer) -> dict[str, str]:
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    assert answer.headers["content-type"] == "application/json", answer.headers
    for name in SECURITY_HEADERS:
        assert name in answer.headers, name
    error = answer.json()["error"]
    assert set(answer.json()) == {"error"} and set(error) == {"type", "message"}
    assert error["type"] and error["message"]
    assert len(error["message"]) <= 1000
    assert "Traceback" not in error["message"] and 'File "' not in error["message"]
    return dict(error)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_hostile_request_gets_a_json_4xx(server: str, case: Hostile) -> None:
    assert_clean_error(send(server, case.raw()))
    health = send(server, Hostile("healthz", method="GET", path="/healthz").raw())
    assert health.status == 200 and health.json()["status"] == "ok"


def test_deep_and_huge_inputs_are_named_in_the_answer(server: str) -> None:
    def error_of(name: str) -> dict[str, str]:
        (case,) = [c for c in CORPUS if c.name == name]
        return assert_clean_error(send(server, case.raw()))

    assert "4500 digits" in error_of("top_k 4500 digits")["message"]
    assert "nested deeper than 160" in error_of("filter objects 100000 deep")["message"]
    assert error_of("filter $and 70 deep")["type"] == "InvalidFilterError"
    assert "not UTF-8" in error_of("invalid UTF-8")["message"]
    assert "surrogate" in error_of("lone surrogate in text")["message"]
    assert "NaN" in error_of("weight NaN")["message"]
    assert len(error_of("unknown key 1 MB")["message"]) < 200


def test_every_answer_carries_the_security_headers(server: str) -> None:
    page = send(server, Hostile("page", method="GET", path="/").raw())
    assert page.status == 200
    # The page keeps its own policy (hashes of its inline code) and gains the frame guard.
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    search = as_json("ok", {"text": "red dress"})
    answers = {
        "json": send(server, search.raw()),
        "health": send(server, Hostile("h", method="GET", path="/healthz").raw()),
        "openapi": send(server, Hostile("o", method="GET", path="/openapi.json").raw()),
        "404": send(server, Hostile("n", method="GET", path="/api/nothing").raw()),
        "413": send(
            server, CORPUS[[c.name for c in CORPUS].index("content-length 20 digits")].raw()
        ),
    }
    hit = answers["json"].json()["results"][0]
    answers["image"] = send(server, Hostile("i", method="GET", path=hit["image_url"]).raw())
    for name, answer in answers.items():
        assert answer.status in (200, 404, 413), name
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["x-frame-options"] == "DENY", name
        assert answer.headers["referrer-policy"] == "no-referrer", name
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, name


# --- what the server does not say -------------------------------------------------------------


class _BrokenStore:
    """A store whose queries fail with an unexpected error (a bug, a full disk, ...)."""

    def __init__(self, inner: LocalVectorStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail at /srv/shop/vectors")


def test_an_unexpected_error_is_logged_in_full_and_answered_with_a_reference(
    caplog: pytest.LogCaptureFixture,
) -> None:
    searcher = CrossmodalSearcher(
        OfflineEmbedder(dimension=DIMENSION), _BrokenStore(LocalVectorStore(dimension=DIMENSION))
    )
    with TestClient(create_app(searcher)) as client, caplog.at_level(logging.ERROR):
        response = client.post("/api/search", json={"text": "red"})
    assert response.status_code == 500
    assert response.headers["x-frame-options"] == "DENY"
    error = response.json()["error"]
    assert error["type"] == "InternalServerError"
    assert "secret" not in response.text and "/srv" not in response.text
    reference = error["message"].rsplit(" ", 1)[-1]
    (record,) = [r for r in caplog.records if reference in r.getMessage()]
    assert record.exc_info is not None and "secret internal detail" in str(record.exc_info[1])


@pytest.fixture(scope="module")
def nova_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, FakeBedrock]]:
    root = write_sample_catalog(tmp_path_factory.mktemp("nova"))
    fake = FakeBedrock()
    embedder = NovaEmbeddings(
        client=fake.client(),
        dimension=256,
        retry_policy=RetryPolicy(max_attempts=2, sleep=lambda _: None),
    )
    searcher = CrossmodalSearcher(embedder, LocalVectorStore(dimension=256))
    searcher.index(load_abo(root, limit=4).products)
    with TestClient(create_app(searcher)) as client:
        yield client, fake


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ValidationException", "ThrottlingException"]
)
def test_aws_errors_are_502_with_the_request_id_and_without_aws_words(
    nova_client: tuple[TestClient, FakeBedrock], code: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, fake = nova_client
    aws_message = "User: arn:aws:iam::123456789012:user/shop is not authorized (quota 42)"
    fake.fail_always(code, message=aws_message)
    try:
        with caplog.at_level(logging.WARNING):
            response = client.post("/api/search", json={"text": "red"})
    finally:
        fake.reset_failures()
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "123456789012" not in response.text and "quota" not in response.text
    assert "AWS request id " in message
    request_id = message.split("AWS request id ", 1)[1].split(")", 1)[0]
    assert len(request_id) == 36  # the x-amzn-RequestId FakeBedrock answered with
    logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert logged and aws_message in logged[0]


def test_a_60_kb_product_id_is_not_echoed_back(tmp_path: Path) -> None:
    searcher, _ = build_demo_searcher(tmp_path)
    with TestClient(create_app(searcher)) as client:
        response = client.get("/api/products/" + "x" * 60_000)
    assert response.status_code == 404
    assert len(response.content) < 300
    assert "(60000 characters)" in response.json()["error"]["message"]
