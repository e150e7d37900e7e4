"""Query photos on the page: decoded once within the memory budget, sent to Nova small and upright.

What reaches the embedder is read off the wire: the searcher embeds with Nova, answered by
``FakeBedrock`` at botocore's HTTP boundary, which records every request body.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from PIL import Image

from crossmodal_search.datasets import (
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import LocalVectorStore
from crossmodal_search.testing import FakeBedrock

pytest.importorskip("fastapi", reason="needs the 'web' extra")

from benchmarks.web_memory import solid_rgba_png
from starlette.exceptions import StarletteDeprecationWarning

from crossmodal_search.web import DEFAULT_DECODE_MEMORY_BUDGET, create_app
from crossmodal_search.web._images import QUERY_IMAGE_MAX_SIDE, DecodeBudget

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory) -> CrossmodalSearcher:
    root = write_sample_catalog(tmp_path_factory.mktemp("catalog"))
    fake = FakeBedrock()
    nova = NovaEmbeddings(client=fake.client(), dimension=256)
    searcher = CrossmodalSearcher(nova, LocalVectorStore(dimension=256))
    searcher.index(load_abo(root, limit=4).products)
    return searcher


@pytest.fixture(scope="module")
def nova(searcher: CrossmodalSearcher) -> Iterator[tuple[TestClient, FakeBedrock]]:
    fake = FakeBedrock()
    embedder = NovaEmbeddings(client=fake.client(), dimension=256)
    with TestClient(create_app(CrossmodalSearcher(embedder, searcher.store))) as client:
        yield client, fake


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A left-to-right gradient (so that orientation and scaling are visible)."""
    row = Image.linear_gradient("L").rotate(90).resize(size)
    return Image.merge("RGB", (row, row.transpose(Image.Transpose.FLIP_LEFT_RIGHT), row)).convert(
        mode
    )


def search_with(client: TestClient, data: bytes, name: str = "photo") -> Any:
    return client.post("/api/search", files={"image": (name, data, "application/octet-stream")})


def pixel(image: Image.Image, xy: tuple[int, int]) -> Any:
    """One pixel: an int for one band, a tuple for several (Pillow types it loosely)."""
    return image.getpixel(xy)


def sent_to_nova(fake: FakeBedrock) -> tuple[str, bytes]:
    """The format and bytes of the image in the last embedding request."""
    image = fake.requests[-1]["singleEmbeddingParams"]["image"]
    return image["format"], base64.b64decode(image["source"]["bytes"])


def test_a_big_photo_reaches_the_embedder_small(nova: tuple[TestClient, FakeBedrock]) -> None:
    client, fake = nova
    upload = encode(gradient((6000, 4000)), "JPEG", quality=80)
    assert search_with(client, upload).status_code == 200
    fmt, data = sent_to_nova(fake)
    with Image.open(io.BytesIO(data)) as sent:
        assert fmt == "jpeg" and sent.format == "JPEG"
        # Decoded at half scale (JPEG draft), then halved: between half the limit and the
        # limit, same shape.
        assert sent.size == (1500, 1000)
        assert QUERY_IMAGE_MAX_SIDE // 2 <= max(sent.size) <= QUERY_IMAGE_MAX_SIDE


def test_a_small_photo_is_sent_as_uploaded(nova: tuple[TestClient, FakeBedrock]) -> None:
    client, fake = nova
    for fmt in ("JPEG", "PNG", "GIF", "WEBP"):
        upload = encode(gradient((300, 200)), fmt)
        assert search_with(client, upload).status_code == 200
        assert sent_to_nova(fake) == (fmt.lower(), upload)


def test_exif_orientation_is_applied(nova: tuple[TestClient, FakeBedrock]) -> None:
    client, fake = nova
    for size in ((4000, 2000), (400, 200)):
        photo = gradient(size)
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
        assert search_with(client, encode(photo, "JPEG", exif=exif)).status_code == 200
        _, data = sent_to_nova(fake)
        with Image.open(io.BytesIO(data)) as sent:
            width, height = sent.size
            assert height > width, size  # upright (portrait), no orientation left to apply
            assert sent.getexif().get(0x0112, 1) == 1
            # The left edge of the stored image (dark red channel) is now at the top.
            assert pixel(sent, (width // 2, 2))[0] < pixel(sent, (width // 2, height - 3))[0]


def test_transparency_survives_the_reduction(nova: tuple[TestClient, FakeBedrock]) -> None:
    client, fake = nova
    photo = gradient((5000, 3000), "RGBA")
    photo.paste((0, 0, 0, 0), (0, 0, 2500, 3000))  # left half transparent
    assert search_with(client, encode(photo, "PNG", compress_level=1)).status_code == 200
    fmt, data = sent_to_nova(fake)
    with Image.open(io.BytesIO(data)) as sent:
        assert fmt == "png" and sent.mode == "RGBA" and sent.size == (1667, 1000)
        assert pixel(sent, (10, 500))[3] == 0
        assert pixel(sent, (1600, 500))[3] == 255


@pytest.mark.parametrize(
    ("image", "fmt", "options", "mode"),
    [
        (Image.new("I;16", (2500, 100), 32896), "PNG", {}, "L"),  # 16-bit grey, scaled not clipped
        (Image.new("P", (3000, 100), 1), "GIF", {"transparency": 0}, "RGBA"),
        (Image.new("CMYK", (100, 100), (0, 255, 255, 0)), "JPEG", {}, "RGB"),
        (Image.new("1", (5000, 10), 1), "PNG", {}, "L"),
    ],
    ids=["16-bit-grey", "palette-gif", "cmyk-jpeg", "bilevel"],
)
def test_every_colour_mode_becomes_one_the_model_takes(
    nova: tuple[TestClient, FakeBedrock],
    image: Image.Image,
    fmt: str,
    options: dict[str, Any],
    mode: str,
) -> None:
    client, fake = nova
    assert search_with(client, encode(image, fmt, **options)).status_code == 200
    _, data = sent_to_nova(fake)
    with Image.open(io.BytesIO(data)) as sent:
        assert sent.mode == mode
        assert max(sent.size) <= QUERY_IMAGE_MAX_SIDE
        if fmt == "PNG" and image.mode == "I;16":
            assert 126 <= pixel(sent, (5, 5)) <= 129  # 32896 / 257 = 128


def test_a_multi_picture_jpeg_is_sent_as_its_first_picture(
    nova: tuple[TestClient, FakeBedrock],
) -> None:
    client, fake = nova
    first, second = gradient((200, 100)), Image.new("RGB", (200, 100), "blue")
    upload = encode(first, "MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(upload)) as check:
        assert check.format == "MPO"
    assert search_with(client, upload).status_code == 200
    fmt, data = sent_to_nova(fake)
    with Image.open(io.BytesIO(data)) as sent:
        assert fmt == "jpeg" and sent.format == "JPEG" and sent.size == (200, 100)


def test_an_image_that_alone_needs_more_than_the_budget_is_413(
    searcher: CrossmodalSearcher,
) -> None:
    with TestClient(create_app(searcher, decode_memory_budget=8 * MiB)) as client:
        big = encode(Image.new("RGB", (3000, 3000), "red"), "PNG")
        response = search_with(client, big)
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["type"] == "PayloadTooLarge"
        assert "3000x3000 PNG" in error["message"] and "at most 8 MiB" in error["message"]
        small = encode(Image.new("RGB", (300, 300), "red"), "PNG")
        assert search_with(client, small).status_code == 200


def test_the_default_budget_takes_the_largest_image_the_pixel_limit_allows(
    searcher: CrossmodalSearcher,
) -> None:
    # 40 MP in every lossless format decodes within 256 MiB; WebP needs four copies and is
    # refused above about 15 MP.
    assert 256 * MiB == DEFAULT_DECODE_MEMORY_BUDGET
    with TestClient(create_app(searcher)) as client:
        side = 6300
        assert search_with(client, solid_rgba_png(side)).status_code == 200
        webp = encode(Image.new("RGB", (side, side // 2), "red"), "WEBP", lossless=True)
        response = search_with(client, webp)
        assert response.status_code == 413, response.text
        assert "WEBP image takes about" in response.json()["error"]["message"]


def test_decode_budget_never_overcommits_and_serves_in_order() -> None:
    budget = DecodeBudget(100)
    order: list[str] = []
    in_use = 0
    most = 0

    async def take(name: str, nbytes: int, delay: float) -> None:
        nonlocal in_use, most
        await anyio.sleep(delay)
        async with budget.reserve(nbytes):
            order.append(name)
            in_use += nbytes
            most = max(most, in_use)
            await anyio.sleep(0.02)
            in_use -= nbytes

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(take, "a", 60, 0)
            tasks.start_soon(take, "big", 90, 0.001)  # must wait for a
            tasks.start_soon(take, "small", 10, 0.002)  # fits now, but queues behind big
        assert budget.free_bytes == 100

    anyio.run(main)
    assert order == ["a", "big", "small"]
    assert most <= 100
    with pytest.raises(ValueError, match="cannot reserve 101"):
        anyio.run(lambda: _reserve(budget, 101))


async def _reserve(budget: DecodeBudget, nbytes: int) -> None:
    async with budget.reserve(nbytes):
        pass


def test_decode_budget_gives_back_a_cancelled_wait() -> None:
    budget = DecodeBudget(100)

    async def main() -> None:
        async with budget.reserve(80):
            with anyio.move_on_after(0.01):
                async with budget.reserve(50):
                    pytest.fail("granted over the budget")
            assert budget.free_bytes == 20
            async with budget.reserve(20):  # the cancelled waiter no longer blocks the queue
                assert budget.free_bytes == 0
        assert budget.free_bytes == 100

    anyio.run(main)
