"""The web app through FastAPI's test client: searches, every refusal, the image-root guard."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossmodal_search import RetryPolicy
from crossmodal_search.datasets import (
    SAMPLE_QUERIES,
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import (
    NovaEmbeddings,
    OfflineEmbedder,
    Segment,
    SegmentedResult,
)
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.search import (
    CrossmodalSearcher,
    Product,
    SegmentUnit,
    segment_records,
)
from crossmodal_search.stores import LocalVectorStore, VectorRecord
from crossmodal_search.testing import FakeBedrock

pytest.importorskip("fastapi", reason="needs the 'web' extra")

from starlette.exceptions import StarletteDeprecationWarning

from crossmodal_search.web import DEFAULT_MAX_UPLOAD_BYTES, S3ImageLinks, create_app
from tests.web_helpers import (
    DIMENSION,
    build_demo_searcher,
    image_bytes,
    live_server,
    png_declaring,
    raw_get,
)

with warnings.catch_warnings():
    # Starlette asks for httpx2 instead of httpx; the client behaves the same for these tests.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TEXT_QUERY, IMAGE_QUERY, BOTH_QUERY, EXACT_QUERY = SAMPLE_QUERIES


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[CrossmodalSearcher, Path]:
    return build_demo_searcher(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def image_root(demo: tuple[CrossmodalSearcher, Path]) -> Path:
    return demo[1] / "images" / "small"


@pytest.fixture(scope="module")
def client(demo: tuple[CrossmodalSearcher, Path], image_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(demo[0], image_root=image_root)) as c:
        yield c


@pytest.fixture(scope="module")
def photo(demo: tuple[CrossmodalSearcher, Path]) -> bytes:
    path = IMAGE_QUERY.image_path(demo[1])
    assert path is not None
    return path.read_bytes()


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["product_id"] for hit in response.json()["results"]]


def assert_error(response: Any, status: int, type_: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"type", "message"} and error["message"]
    if type_ is not None:
        assert error["type"] == type_, error
    return dict(error)


def assert_still_serving(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert ids(client.post("/api/search", json={"text": TEXT_QUERY.text}))[0] == (
        TEXT_QUERY.expected
    )


# --- the page -------------------------------------------------------------------------------


def test_page_is_one_self_contained_accessible_document(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    # No CDN or any other origin: the machine (and many shops' kiosks) are offline.
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    for ref in re.findall(r'(?:href|src)="([^"]*)"', html):
        assert ref.startswith(("data:", "/", "#")), ref
    for needle in (
        'accept="image/*"',
        'capture="environment"',
        'type="range"',
        'id="mode"',
        'id="fusion"',
        'id="filter-json"',
        'id="where"',
        'name="viewport"',
    ):
        assert needle in html, needle
    for control in ("photo-input", "camera-input", "query-text", "text-weight", "mode", "fusion"):
        assert f'for="{control}"' in html, f"{control} has no label"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_healthz(client: TestClient) -> None:
    from crossmodal_search import __version__

    assert client.get("/healthz").json() == {"status": "ok", "version": __version__}


# --- searches -------------------------------------------------------------------------------


def test_search_by_text_returns_cards_with_served_images(
    client: TestClient, image_root: Path
) -> None:
    response = client.post("/api/search", json={"text": TEXT_QUERY.text, "top_k": 5})
    hits = response.json()["results"]
    assert ids(response)[0] == TEXT_QUERY.expected
    assert len(hits) == 5
    first = hits[0]
    assert first["title"] and first["matched_type"]
    assert first["similarity"] >= hits[-1]["similarity"]
    assert "image_path" not in first["metadata"]
    image = client.get(first["image_url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    rel = first["image_url"].removeprefix("/images/")
    assert image.content == (image_root / rel).read_bytes()


def test_search_by_image_multipart(client: TestClient, photo: bytes) -> None:
    response = client.post(
        "/api/search",
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={"mode": IMAGE_QUERY.search_mode},
    )
    assert ids(response)[0] == IMAGE_QUERY.expected
    assert response.json()["query"]["has_image"] is True


@pytest.mark.parametrize("prefix", ["", "data:image/jpeg;base64,"])
def test_search_by_image_base64_json(client: TestClient, photo: bytes, prefix: str) -> None:
    encoded = prefix + base64.b64encode(photo).decode()
    response = client.post("/api/search", json={"image": encoded, "mode": IMAGE_QUERY.search_mode})
    assert ids(response)[0] == IMAGE_QUERY.expected


def test_search_by_text_and_image(client: TestClient, photo: bytes) -> None:
    response = client.post(
        "/api/search",
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={
            "text": BOTH_QUERY.text,
            "text_weight": str(BOTH_QUERY.text_weight),
            "mode": BOTH_QUERY.search_mode,
        },
    )
    assert ids(response)[0] == BOTH_QUERY.expected


def test_query_is_echoed_with_its_weights(client: TestClient) -> None:
    body = {"text": "red", "text_weight": 0.8, "top_k": 3, "mode": "all", "fusion": "mean"}
    echo = client.post("/api/search", json=body).json()["query"]
    assert echo == {
        "text": "red",
        "has_image": False,
        "mode": "all",
        "fusion": "mean",
        "text_weight": 0.8,
        "top_k": 3,
        "filter": None,
        "hybrid": True,  # the store has full-text fields and the query has words
        "lexical_weight": 0.3,
        "collapse": "product",
    }
    body = {"text": "red", "hybrid": False, "lexical_weight": 0.6}
    echo = client.post("/api/search", json=body).json()["query"]
    assert (echo["hybrid"], echo["lexical_weight"]) == (False, 0.6)


def test_hybrid_search_finds_a_model_number_and_says_which_words_matched(
    client: TestClient,
) -> None:
    body = {"text": "RS-2424Y", "top_k": 3}
    hybrid = client.post("/api/search", json=body).json()["results"]
    assert hybrid[0]["product_id"] == "B0SAMPLE20"
    assert hybrid[0]["matched_by"] == "both"
    assert hybrid[0]["matched_words"] == ["RS", "2424Y"]
    assert set(hybrid[0]["word_scores"]) == {"model_number"}
    vectors = client.post("/api/search", json={**body, "hybrid": False}).json()["results"]
    assert vectors[0]["product_id"] != "B0SAMPLE20"
    assert all(h["matched_by"] == "vector" and h["matched_words"] == [] for h in vectors)
    form = client.post("/api/search", data={"text": "RS-2424Y", "hybrid": "false"})
    assert form.json()["query"]["hybrid"] is False
    bad = client.post("/api/search", json={"text": "x", "lexical_weight": 2})
    assert bad.status_code == 422


def test_filters_restrict_results(client: TestClient) -> None:
    by_json = client.post(
        "/api/search",
        json={"text": "blue", "filter": {"product_type": "SHOES"}, "top_k": 10},
    )
    assert ids(by_json)
    assert all(hit["metadata"]["product_type"] == "SHOES" for hit in by_json.json()["results"])
    unfiltered = client.post("/api/search", json={"text": "blue", "top_k": 10})
    assert {h["metadata"]["product_type"] for h in unfiltered.json()["results"]} != {"SHOES"}
    by_form = client.post(
        "/api/search", data={"text": "blue", "where": "product_type=SHOES", "top_k": "10"}
    )
    assert ids(by_form) == ids(by_json)
    both = client.post(
        "/api/search",
        data={
            "text": "blue",
            "where": "product_type=SHOES, country=US",
            "filter": '{"product_type": {"$ne": "SHOES"}}',
        },
    )
    assert ids(both) == []
    assert both.json()["query"]["filter"] == {
        "$and": [{"product_type": {"$ne": "SHOES"}}, {"product_type": "SHOES", "country": "US"}]
    }


def test_product_lookup(client: TestClient) -> None:
    product = client.get(f"/api/products/{TEXT_QUERY.expected}")
    assert product.status_code == 200
    data = product.json()
    assert data["product_id"] == TEXT_QUERY.expected
    assert data["title"] and data["image_url"].startswith("/images/")
    assert_error(client.get("/api/products/NOPE"), 404, "NotFound")


def test_no_image_root_serves_no_images(demo: tuple[CrossmodalSearcher, Path]) -> None:
    with TestClient(create_app(demo[0], image_root=None)) as c:
        hits = c.post("/api/search", json={"text": "red"}).json()["results"]
        assert hits and all(hit["image_url"] is None for hit in hits)
        assert_error(c.get("/images/anything.jpg"), 404)


# --- product photos in S3 --------------------------------------------------------------------


def _s3_catalog_searcher() -> CrossmodalSearcher:
    """Two products whose images were indexed as s3:// URIs (one is not an image file)."""
    searcher = CrossmodalSearcher(
        OfflineEmbedder(dimension=DIMENSION), LocalVectorStore(dimension=DIMENSION)
    )
    searcher.index(
        [Product(product_id="P-RED", text="Red summer dress"), Product("P-DOC", "Dress manual")]
    )
    images = {"P-RED": "s3://shop-images/abo/red dress.jpg", "P-DOC": "s3://shop-images/a.pdf"}
    store = searcher.store
    store.put(
        [
            VectorRecord(r.key, r.vector, {**r.metadata, "image_path": images[r.key.split("#")[0]]})
            if "#" in r.key
            else VectorRecord(
                r.key, r.vector, {**r.metadata, "image_path": images[str(r.metadata["product_id"])]}
            )
            for r in store.records()
        ]
    )
    return searcher


def _signing_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="x",
        config=Config(signature_version="s3v4"),
    )


def test_s3_images_are_linked_with_presigned_urls() -> None:
    links = S3ImageLinks(_signing_client(), expires_in=600)
    with TestClient(create_app(_s3_catalog_searcher(), s3_images=links)) as c:
        hits = {
            h["product_id"]: h
            for h in c.post("/api/search", json={"text": "dress"}).json()["results"]
        }
        url = hits["P-RED"]["image_url"]
        assert url.startswith("https://shop-images.s3.amazonaws.com/abo/red%20dress.jpg?")
        assert "X-Amz-Expires=600" in url and "X-Amz-Signature=" in url
        assert hits["P-DOC"]["image_url"] is None  # only image files are linked
        assert c.get("/api/products/P-RED").json()["image_url"].startswith("https://shop-images.")
        # The page lets the browser load them from S3, and nothing else new.
        csp = c.get("/").headers["content-security-policy"]
        assert "img-src 'self' blob: data: https://*.amazonaws.com;" in csp


def test_s3_images_are_not_linked_unless_asked_or_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    searcher = _s3_catalog_searcher()
    with TestClient(create_app(searcher)) as c:
        hits = c.post("/api/search", json={"text": "dress"}).json()["results"]
        assert [h["image_url"] for h in hits] == [None, None]
        assert "amazonaws" not in c.get("/").headers["content-security-policy"]
    import boto3

    unsigned = boto3.client("s3", region_name="us-east-1")  # no credentials anywhere (conftest)
    with TestClient(create_app(searcher, s3_images=S3ImageLinks(unsigned))) as c:
        for _ in range(2):
            hits = c.post("/api/search", json={"text": "dress"}).json()["results"]
            assert [h["image_url"] for h in hits] == [None, None]
    assert sum("cannot presign" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("seconds", [0, 7 * 24 * 3600 + 1, 1.5, True])
def test_s3_link_lifetime_is_checked(seconds: object) -> None:
    with pytest.raises(ConfigurationError, match="expires_in"):
        S3ImageLinks(_signing_client(), expires_in=seconds)  # type: ignore[arg-type]


# --- segment hits (video, audio, document) ---------------------------------------------------

KETTLE_SCENE = "a red kettle whistling on the stove"


@pytest.fixture(scope="module")
def media_client() -> Iterator[TestClient]:
    """Two products, a video of 5 s segments (the kettle at 1:05) and a PDF's pages."""
    embedder = OfflineEmbedder(dimension=DIMENSION)
    searcher = CrossmodalSearcher(embedder, LocalVectorStore(dimension=DIMENSION))
    kettle = Product(product_id="P-KETTLE", text="Stovetop kettle\nEnamel, 2 l")
    lamp = Product(product_id="P-LAMP", text="Desk lamp\nBrass reading lamp")
    assert not searcher.index([kettle, lamp]).failed

    def segment(text: str, index: int, start: float, unit: SegmentUnit) -> Segment:
        vector = embedder.embed_text(text, purpose="GENERIC_INDEX")
        return Segment(vector, index, start, start + (5.0 if unit == "seconds" else 1.0), unit, "X")

    scenes = [f"kitchen tour scene number {i} cupboards" for i in range(16)]
    scenes[13] = KETTLE_SCENE
    video = SegmentedResult(
        tuple(segment(t, i, 5.0 * i, "seconds") for i, t in enumerate(scenes)),
        source_uri="s3://media-bucket/videos/kettle%20demo.mp4",
    )
    pages = ["lamp assembly overview", "replacing the brass lamp bulb safely", "warranty terms"]
    manual = SegmentedResult(
        tuple(segment(t, i, float(i), "pages") for i, t in enumerate(pages)),
        source_uri="file:///srv/private/docs/lamp%20manual.pdf",
    )
    store = searcher.store
    store.put(
        segment_records("P-KETTLE", video, kind="video", extra_metadata={"text": kettle.text})
    )
    store.put(
        segment_records("P-LAMP", manual, kind="document", extra_metadata={"text": lamp.text})
    )
    with TestClient(create_app(searcher)) as c:
        yield c


def test_video_hit_says_where_in_the_video_it_matched(media_client: TestClient) -> None:
    response = media_client.post("/api/search", json={"text": KETTLE_SCENE, "mode": "video"})
    first = response.json()["results"][0]
    assert ids(response)[0] == "P-KETTLE"
    assert first["matched_type"] == "video"
    assert first["title"] == "Stovetop kettle"
    assert (first["segment_start"], first["segment_end"], first["segment_unit"]) == (
        65.0,
        70.0,
        "seconds",
    )
    assert first["segment_label"] == "1:05\u20131:10"
    assert first["page"] is None
    assert first["source_uri"] == "s3://media-bucket/videos/kettle%20demo.mp4"
    assert first["source_name"] == "kettle demo.mp4"


def test_document_hit_names_the_page_but_not_the_server_path(media_client: TestClient) -> None:
    response = media_client.post(
        "/api/search", json={"text": "replacing the lamp bulb", "mode": "document"}
    )
    first = response.json()["results"][0]
    assert ids(response)[0] == "P-LAMP"
    assert first["matched_type"] == "document"
    assert (first["segment_start"], first["segment_end"], first["segment_unit"]) == (
        1.0,
        2.0,
        "pages",
    )
    assert first["page"] == 2 and first["segment_label"] == "p. 2"
    assert first["source_name"] == "lamp manual.pdf"
    assert first["source_uri"] is None  # a file on the server stays private
    assert "/srv/private" not in response.text
    assert "source_uri" not in first["metadata"]


def test_product_vector_hits_carry_no_segment_fields(media_client: TestClient) -> None:
    response = media_client.post("/api/search", json={"text": "brass desk lamp", "mode": "text"})
    first = response.json()["results"][0]
    assert ids(response)[0] == "P-LAMP" and first["matched_type"] == "text"
    for field in ("segment_start", "segment_end", "segment_unit", "page", "segment_label"):
        assert first[field] is None, field
    assert first["source_uri"] is None and first["source_name"] is None


def test_all_mode_keeps_the_segment_of_the_best_match(media_client: TestClient) -> None:
    hits = media_client.post("/api/search", json={"text": KETTLE_SCENE, "mode": "all"}).json()
    kettle = next(h for h in hits["results"] if h["product_id"] == "P-KETTLE")
    assert kettle["matched_type"] == "video" and kettle["segment_label"] == "1:05\u20131:10"


def test_page_offers_media_modes_and_labels_segment_hits(media_client: TestClient) -> None:
    html = media_client.get("/").text
    for mode in ("video", "audio", "document"):
        assert f'<option value="{mode}">' in html, mode
    assert "hit.segment_label" in html and ".badge.video" in html


def test_bad_image_root_is_a_configuration_error(
    demo: tuple[CrossmodalSearcher, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="not a directory"):
        create_app(demo[0], image_root=tmp_path / "missing")


# --- bad input: every refusal is JSON with the right status, and the server keeps serving ----

BAD_JSON_BODIES: list[tuple[str, object, int, str]] = [
    ("no query", {}, 422, "InvalidInputError"),
    ("blank text", {"text": "   "}, 422, "InvalidInputError"),
    ("top_k 0", {"text": "red", "top_k": 0}, 422, "InvalidInputError"),
    ("top_k 101", {"text": "red", "top_k": 101}, 422, "InvalidInputError"),
    ("weight 2", {"text": "red", "text_weight": 2}, 422, "InvalidInputError"),
    ("mode", {"text": "red", "mode": "everything"}, 422, "InvalidInputError"),
    ("fusion", {"text": "red", "fusion": "magic"}, 422, "InvalidInputError"),
    ("unknown field", {"text": "red", "colour": "red"}, 422, "InvalidInputError"),
    ("text too long", {"text": "x" * 9000}, 422, "InvalidInputError"),
    ("not base64", {"image": "not base64!!"}, 422, "InvalidInputError"),
    (
        "filter operator",
        {"text": "red", "filter": {"color": {"$regex": "r"}}},
        422,
        "InvalidFilterError",
    ),
    ("filter not object", {"text": "red", "filter": [1]}, 422, "InvalidFilterError"),
    ("filter bad json", {"text": "red", "filter": "{oops"}, 422, "InvalidFilterError"),
    ("where no =", {"text": "red", "where": "color"}, 422, "InvalidFilterError"),
    ("where $key", {"text": "red", "where": "$or=1"}, 422, "InvalidFilterError"),
    ("body is a list", [1, 2], 422, "InvalidInputError"),
]


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [case[1:] for case in BAD_JSON_BODIES],
    ids=[case[0] for case in BAD_JSON_BODIES],
)
def test_bad_json_requests(client: TestClient, body: object, status: int, type_: str) -> None:
    assert_error(client.post("/api/search", json=body), status, type_)
    assert_still_serving(client)


def test_body_that_is_not_json(client: TestClient) -> None:
    response = client.post(
        "/api/search", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "InvalidInputError")
    assert_still_serving(client)


def test_unsupported_content_type(client: TestClient) -> None:
    response = client.post("/api/search", content=b"red", headers={"content-type": "text/plain"})
    assert_error(response, 415, "UnsupportedMediaType")
    assert_still_serving(client)


def test_non_image_bytes_with_an_image_name_and_type(client: TestClient) -> None:
    fake = b"#!/bin/sh\necho this is not a jpeg\n" * 10
    response = client.post("/api/search", files={"image": ("cat.jpg", fake, "image/jpeg")})
    assert_error(response, 415, "UnsupportedMediaType")
    assert_still_serving(client)


def test_real_image_of_a_refused_type(client: TestClient) -> None:
    response = client.post(
        "/api/search", files={"image": ("photo.png", image_bytes("BMP"), "image/png")}
    )
    assert_error(response, 415, "UnsupportedMediaType")
    assert_still_serving(client)


def test_corrupt_image(client: TestClient, photo: bytes) -> None:
    truncated = photo[: len(photo) // 2]
    response = client.post("/api/search", files={"image": ("photo.jpg", truncated, "image/jpeg")})
    assert_error(response, 422, "UnsupportedMediaError")
    assert_still_serving(client)


def test_empty_image_upload(client: TestClient) -> None:
    response = client.post("/api/search", files={"image": ("photo.jpg", b"", "image/jpeg")})
    assert_error(response, 422)
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("width", "height"),
    [(100_000, 100_000), (10_000, 10_000), (8_000, 6_000)],
    ids=["pillow-error", "pillow-warning", "our-limit"],
)
def test_decompression_bomb(client: TestClient, width: int, height: int) -> None:
    bomb = png_declaring(width, height)
    assert len(bomb) < 10_000
    multipart = client.post("/api/search", files={"image": ("tiny.png", bomb, "image/png")})
    assert_error(multipart, 413, "PayloadTooLarge")
    as_json = client.post("/api/search", json={"image": base64.b64encode(bomb).decode()})
    assert_error(as_json, 413, "PayloadTooLarge")
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_every_accepted_image_type(client: TestClient, fmt: str, mime: str) -> None:
    # The declared type and name are wrong on purpose: only the bytes count.
    data = image_bytes(fmt, (64, 48), "blue")
    response = client.post(
        "/api/search", files={"image": ("upload.bin", data, "application/octet-stream")}
    )
    assert ids(response)


def test_simple_filter_values_are_typed(client: TestClient) -> None:
    response = client.post(
        "/api/search",
        json={"text": "red", "where": 'a=1, b=2.5, c=true, d=red, e="7", f=0123'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["query"]["filter"] == {
        "a": 1,
        "b": 2.5,
        "c": True,
        "d": "red",
        "e": "7",
        "f": "0123",
    }


def test_pixel_limit_is_configurable(demo: tuple[CrossmodalSearcher, Path]) -> None:
    with TestClient(create_app(demo[0], max_pixels=100)) as c:
        small = image_bytes("PNG", (10, 10))
        assert (
            c.post("/api/search", files={"image": ("a.png", small, "image/png")}).status_code == 200
        )
        big = image_bytes("PNG", (11, 10))
        assert_error(c.post("/api/search", files={"image": ("a.png", big, "image/png")}), 413)


def test_oversized_upload_is_refused(demo: tuple[CrossmodalSearcher, Path]) -> None:
    limit = 50_000
    with TestClient(create_app(demo[0], max_upload_bytes=limit)) as c:
        # A valid image just over the limit (noise does not compress).
        blob = os.urandom(limit + 1)
        response = c.post("/api/search", files={"image": ("big.jpg", blob, "image/jpeg")})
        assert_error(response, 413, "PayloadTooLarge")
        as_json = c.post("/api/search", json={"image": base64.b64encode(blob).decode()})
        assert_error(as_json, 413, "PayloadTooLarge")
        assert c.get("/healthz").status_code == 200


def test_oversized_body_is_cut_off_while_streaming(demo: tuple[CrossmodalSearcher, Path]) -> None:
    limit = 50_000
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 10_000

    with TestClient(create_app(demo[0], max_upload_bytes=limit)) as c:
        # No Content-Length: the limit is enforced on the bytes as they arrive.
        response = c.post(
            "/api/search",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert_error(response, 413, "PayloadTooLarge")
        assert c.get("/healthz").status_code == 200


def test_default_upload_limit_is_ten_mib(client: TestClient) -> None:
    assert DEFAULT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    blob = b"\xff\xd8" + b"\x00" * DEFAULT_MAX_UPLOAD_BYTES
    response = client.post("/api/search", files={"image": ("big.jpg", blob, "image/jpeg")})
    assert_error(response, 413, "PayloadTooLarge")
    assert_still_serving(client)


def test_multipart_field_errors(client: TestClient, photo: bytes) -> None:
    two_files = client.post(
        "/api/search",
        files=[
            ("image", ("a.jpg", photo, "image/jpeg")),
            ("other", ("b.jpg", photo, "image/jpeg")),
        ],
    )
    assert two_files.status_code in (400, 422)
    assert "error" in two_files.json()
    image_as_text = client.post("/api/search", data={"image": "abc"})
    assert_error(image_as_text, 422, "InvalidInputError")
    bad_number = client.post("/api/search", data={"text": "red", "top_k": "many"})
    assert_error(bad_number, 422, "InvalidInputError")
    assert_still_serving(client)


# --- product images only from the image root -------------------------------------------------


@pytest.fixture
def guarded(
    tmp_path: Path, demo: tuple[CrossmodalSearcher, Path]
) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path / "root"
    (root / "ab").mkdir(parents=True)
    (root / "ab" / "ok.jpg").write_bytes(image_bytes("JPEG"))
    (root / "notes.txt").write_text("not an image")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"SECRET" + image_bytes("JPEG"))
    (root / "escape.jpg").symlink_to(secret)
    (root / "inside.jpg").symlink_to(root / "ab" / "ok.jpg")
    with TestClient(create_app(demo[0], image_root=root)) as c:
        yield c, tmp_path


TRAVERSALS = [
    "/images/%2e%2e/secret.jpg",
    "/images/%2E%2E/secret.jpg",
    "/images/..%2fsecret.jpg",
    "/images/%2e%2e%2fsecret.jpg",
    "/images/ab/%2e%2e/%2e%2e/secret.jpg",
    "/images/..%5csecret.jpg",
    "/images/escape.jpg",
    "/images/notes.txt",
    "/images/ab/ok.jpg%00.png",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(guarded: tuple[TestClient, Path], path: str) -> None:
    client, _ = guarded
    response = client.get(path)
    assert response.request.url.raw_path.decode() == path  # reached the server as written
    assert_error(response, 404, "NotFound")
    assert b"SECRET" not in response.content
    assert client.get("/images/ab/ok.jpg").status_code == 200


def test_absolute_paths_are_refused(guarded: tuple[TestClient, Path]) -> None:
    client, tmp = guarded
    secret = tmp / "secret.jpg"
    for path in (
        f"/images/{secret}",
        f"/images/%2F{str(secret).lstrip('/')}",
        "/images//etc/passwd",
    ):
        response = client.get(path)
        assert_error(response, 404, "NotFound")
        assert b"SECRET" not in response.content


def test_symlinks_inside_the_root_are_served(guarded: tuple[TestClient, Path]) -> None:
    client, _ = guarded
    response = client.get("/images/inside.jpg")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"


def test_literal_dot_dot_over_a_real_socket(
    demo: tuple[CrossmodalSearcher, Path], tmp_path: Path
) -> None:
    # HTTP clients normalise "../" away; a raw request line shows what the server itself does.
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.jpg").write_bytes(image_bytes("JPEG"))
    (tmp_path / "secret.jpg").write_bytes(b"SECRET")
    with live_server(create_app(demo[0], image_root=root)) as url:
        for path in (
            "/images/../secret.jpg",
            "/images/ok/../../secret.jpg",
            "/images/%2e%2e/secret.jpg",
        ):
            status, body = raw_get(url, path)
            assert status == 404, path
            assert b"SECRET" not in body
        assert raw_get(url, "/images/ok.jpg")[0] == 200


# --- failures behind the API ----------------------------------------------------------------


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) >= {"/api/search", "/api/products/{product_id}", "/images/{path}", "/healthz"}
    body = paths["/api/search"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    ok = paths["/api/search"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/SearchResponse")
    assert {"413", "415", "422", "502"} <= set(paths["/api/search"]["post"]["responses"])
    assert "SearchHit" in spec["components"]["schemas"]


def test_missing_web_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "from crossmodal_search.errors import ConfigurationError\n"
        "try:\n"
        "    import crossmodal_search.web\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'crossmodal-search[web]'" in out


def test_json_error_shape_for_unknown_routes(client: TestClient) -> None:
    assert_error(client.get("/api/nothing"), 404, "NotFound")
    assert_error(client.get("/api/search"), 405, "MethodNotAllowed")
    assert json.loads(client.get("/healthz").text)["status"] == "ok"


@pytest.fixture(scope="module")
def nova_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, FakeBedrock]]:
    """A searcher on Nova whose Bedrock is faked at the HTTP boundary (errors injectable)."""
    root = write_sample_catalog(tmp_path_factory.mktemp("nova-catalog"))
    fake = FakeBedrock()
    embedder = NovaEmbeddings(
        client=fake.client(),
        dimension=256,
        retry_policy=RetryPolicy(max_attempts=2, sleep=lambda _: None),
    )
    searcher = CrossmodalSearcher(embedder, LocalVectorStore(dimension=256))
    searcher.index(load_abo(root, limit=4).products)
    with TestClient(create_app(searcher)) as c:
        yield c, fake


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        ("AccessDeniedException", "AccessDeniedError"),
        ("ThrottlingException", "RetryExhaustedError"),
        ("InternalServerException", "RetryExhaustedError"),
    ],
)
def test_service_errors_are_502(
    nova_app: tuple[TestClient, FakeBedrock], code: str, type_: str
) -> None:
    client, fake = nova_app
    fake.fail_always(code)
    try:
        assert_error(client.post("/api/search", json={"text": "red"}), 502, type_)
    finally:
        fake.reset_failures()
    assert ids(client.post("/api/search", json={"text": "red", "top_k": 2}))


class _BrokenStore:
    """A store whose queries fail with an unexpected error (a bug, a full disk, ...)."""

    def __init__(self, inner: LocalVectorStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")


def test_unexpected_failure_is_a_clean_500(demo: tuple[CrossmodalSearcher, Path]) -> None:
    embedder = OfflineEmbedder(dimension=DIMENSION)
    store = _BrokenStore(LocalVectorStore(dimension=DIMENSION))
    searcher = CrossmodalSearcher(embedder, store)
    with TestClient(create_app(searcher)) as c:
        error = assert_error(c.post("/api/search", json={"text": "red"}), 500)
        assert error["type"] == "InternalServerError"
        assert "secret" not in error["message"]
        assert c.get("/healthz").status_code == 200


def test_wrong_embedder_for_the_index_is_a_500_configuration_error(
    demo: tuple[CrossmodalSearcher, Path],
) -> None:
    # The store was built with the offline embedder; querying it with Nova would be meaningless.
    nova = NovaEmbeddings(client=FakeBedrock().client(), dimension=DIMENSION)
    with TestClient(create_app(CrossmodalSearcher(nova, demo[0].store))) as c:
        assert_error(c.post("/api/search", json={"text": "red"}), 500, "ConfigurationError")
