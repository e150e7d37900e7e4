"""End to end in a real headless Chromium: upload a photo on the page, see the right product.

Drives Debian's chromium (never a downloaded browser) with the ``playwright`` package against
the app served by uvicorn on a loopback port. Skipped, with the reason, only when no chromium
binary is installed (``make browser`` installs it where it can).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossmodal_search.datasets import SAMPLE_QUERIES
from crossmodal_search.search import CrossmodalSearcher

pytest.importorskip("fastapi", reason="needs the 'web' extra")

from crossmodal_search.web import create_app
from tests.web_helpers import build_demo_searcher, live_server

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TEXT_QUERY, IMAGE_QUERY, BOTH_QUERY, EXACT_QUERY = SAMPLE_QUERIES


def chromium_path() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[CrossmodalSearcher, Path]:
    return build_demo_searcher(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def catalog_and_url(demo: tuple[CrossmodalSearcher, Path]) -> Iterator[tuple[Path, str]]:
    searcher, root = demo
    app = create_app(searcher, image_root=root / "images" / "small")
    with live_server(app) as url:
        yield root, url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium binary (install Debian's chromium: `make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Refused requests are logged as "Failed to load resource"; those are expected in some tests.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield page
    context.close()
    # A CSP violation or a script error shows up here.
    assert errors == []


def screenshot(page: Any, name: str) -> None:
    directory = os.environ.get("CROSSMODAL_SCREENSHOTS")
    if directory:
        page.screenshot(path=str(Path(directory) / name), full_page=True)


def photo_loaded(img: Any) -> bool:
    """Wait until the browser has fetched and decoded an <img>; False if it is broken."""
    return bool(
        img.evaluate(
            """async (img) => {
                try { await img.decode(); } catch { return false; }
                return img.naturalWidth > 0;
            }"""
        )
    )


def result_ids(page: Any) -> list[str]:
    page.wait_for_selector("#results li.card", timeout=15_000)
    return list(
        page.eval_on_selector_all("#results li.card", "els => els.map(e => e.dataset.productId)")
    )


def test_upload_a_photo_and_see_the_product(page: Any, catalog_and_url: tuple[Path, str]) -> None:
    root, url = catalog_and_url
    photo = IMAGE_QUERY.image_path(root)
    assert photo is not None
    page.goto(url + "/")
    page.set_input_files("#photo-input", str(photo))
    # The preview has no size until the browser has decoded the photo: wait, do not poll once.
    preview = page.locator("#photo-preview")
    preview.wait_for(state="visible", timeout=10_000)
    assert photo_loaded(preview)
    page.select_option("#mode", IMAGE_QUERY.search_mode)
    page.click("#search-button")
    ids = result_ids(page)
    assert ids[0] == IMAGE_QUERY.expected
    first = page.locator("#results li.card").first
    assert "matched:" in first.locator(".badge").inner_text()
    assert "similarity" in first.inner_text()
    # The card's photo really loaded from /images/ (naturalWidth is 0 for a broken image).
    assert photo_loaded(first.locator("img"))
    screenshot(page, "results-photo.png")


def test_text_and_photo_together(page: Any, catalog_and_url: tuple[Path, str]) -> None:
    root, url = catalog_and_url
    photo = BOTH_QUERY.image_path(root)
    assert photo is not None and BOTH_QUERY.text
    page.goto(url + "/")
    page.set_input_files("#photo-input", str(photo))
    page.fill("#query-text", BOTH_QUERY.text)
    page.select_option("#mode", BOTH_QUERY.search_mode)
    page.fill("#text-weight", str(BOTH_QUERY.text_weight))
    weight = round(BOTH_QUERY.text_weight * 100)
    assert page.inner_text("#weight-value") == f"Text {weight}% · Image {100 - weight}%"
    page.click("#search-button")
    assert result_ids(page)[0] == BOTH_QUERY.expected


def test_refusal_is_shown_and_the_page_recovers(
    page: Any, catalog_and_url: tuple[Path, str], tmp_path: Path
) -> None:
    _, url = catalog_and_url
    fake = tmp_path / "not-really.jpg"
    fake.write_bytes(b"plain text pretending to be a photo")
    page.goto(url + "/")
    page.set_input_files("#photo-input", str(fake))
    page.click("#search-button")
    alert = page.locator("#error")
    alert.wait_for(state="visible")
    assert "not an image" in alert.inner_text()
    page.click("#clear-photo")
    page.fill("#query-text", TEXT_QUERY.text or "")
    page.click("#search-button")
    assert result_ids(page)[0] == TEXT_QUERY.expected


def test_phone_width_layout(browser: Any, catalog_and_url: tuple[Path, str]) -> None:
    _, url = catalog_and_url
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        page.goto(url + "/")
        page.fill("#query-text", TEXT_QUERY.text or "")
        page.click("#search-button")
        assert result_ids(page)[0] == TEXT_QUERY.expected
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "results-phone.png")
    finally:
        context.close()


def test_drag_and_drop_a_photo(page: Any, catalog_and_url: tuple[Path, str]) -> None:
    _, url = catalog_and_url
    page.goto(url + "/")
    target = IMAGE_QUERY.expected
    page.evaluate(
        """async (productId) => {
            const product = await (await fetch("/api/products/" + productId)).json();
            const blob = await (await fetch(product.image_url)).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], "dropped.jpg", { type: blob.type }));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        }""",
        target,
    )
    assert page.get_attribute("#photo-preview", "alt") == "Selected photo: dropped.jpg"
    page.select_option("#mode", "image")
    page.click("#search-button")
    assert result_ids(page)[0] == target


def test_every_control_has_a_label(page: Any, catalog_and_url: tuple[Path, str]) -> None:
    _, url = catalog_and_url
    page.goto(url + "/")
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll("input, select, textarea"))
            .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-label"))
            .map((el) => el.id || el.name)"""
    )
    assert unlabelled == []


def test_photo_over_the_limit_is_shrunk_by_the_page(
    browser: Any, demo: tuple[CrossmodalSearcher, Path], tmp_path: Path
) -> None:
    from PIL import Image

    searcher, root = demo
    limit = 200_000
    big = tmp_path / "big.png"
    # A 1200x1200 photo of the blue sneakers, stored losslessly: far over the limit.
    photo = IMAGE_QUERY.image_path(root)
    assert photo is not None
    Image.open(photo).resize((1200, 1200)).save(big, format="PNG")
    assert big.stat().st_size > limit
    app = create_app(searcher, image_root=root / "images" / "small", max_upload_bytes=limit)
    context = browser.new_context()
    page = context.new_page()
    try:
        with live_server(app) as url:
            page.goto(url + "/")
            page.set_input_files("#photo-input", str(big))
            page.select_option("#mode", IMAGE_QUERY.search_mode)
            page.click("#search-button")
            assert result_ids(page)[0] == IMAGE_QUERY.expected
    finally:
        context.close()


def test_the_bar_is_the_similarity_and_rrf_shows_why(
    page: Any, catalog_and_url: tuple[Path, str]
) -> None:
    import httpx

    root, url = catalog_and_url
    photo = BOTH_QUERY.image_path(root)
    assert photo is not None and BOTH_QUERY.text
    page.goto(url + "/")
    page.set_input_files("#photo-input", str(photo))
    page.fill("#query-text", BOTH_QUERY.text)
    page.select_option("#mode", BOTH_QUERY.search_mode)
    page.select_option("#fusion", "rrf")
    page.fill("#text-weight", str(BOTH_QUERY.text_weight))
    page.click("#search-button")
    ids = result_ids(page)
    bars = page.eval_on_selector_all("#results li.card meter", "els => els.map(e => e.value)")
    why = page.eval_on_selector_all("#results li.card .why", "els => els.map(e => e.textContent)")
    with open(photo, "rb") as fh:
        api = httpx.post(
            url + "/api/search",
            data={
                "text": BOTH_QUERY.text,
                "mode": BOTH_QUERY.search_mode,
                "fusion": "rrf",
                "text_weight": str(BOTH_QUERY.text_weight),
            },
            files={"image": ("photo.jpg", fh, "image/jpeg")},
        ).json()["results"]
    assert ids == [hit["product_id"] for hit in api]
    assert bars == pytest.approx([max(0.0, hit["similarity"]) for hit in api], abs=1e-6)
    assert why and all("text " in w and "image " in w and "rank score" in w for w in why)


def test_matching_exact_words_is_a_switch_and_the_words_are_shown(
    page: Any, catalog_and_url: tuple[Path, str]
) -> None:
    _, url = catalog_and_url
    page.goto(url + "/")
    assert page.is_visible("#hybrid") and page.is_checked("#hybrid")  # the store has words
    page.fill("#query-text", "RS-2424Y")
    page.click("#search-button")
    assert result_ids(page)[0] == "B0SAMPLE20"
    first_why = page.text_content("#results li.card .why")
    assert first_why is not None and "words: RS 2424Y" in first_why
    badge = page.text_content("#results li.card .badge")
    assert badge is not None and badge.endswith("+ words")
    page.uncheck("#hybrid")
    page.click("#search-button")
    page.wait_for_selector("#results li.card .why", state="detached", timeout=15_000)
    assert result_ids(page)[0] != "B0SAMPLE20"  # by meaning alone a model number is lost


def test_a_product_shows_its_similar_products(page: Any, catalog_and_url: tuple[Path, str]) -> None:
    import httpx

    _, url = catalog_and_url
    page.goto(url + "/")
    page.fill("#query-text", TEXT_QUERY.text or "")
    page.click("#search-button")
    opened = result_ids(page)[0]
    page.locator("#results li.card button.details").first.click()
    page.wait_for_selector("#similar-results li.card", timeout=15_000)
    assert page.inner_text("#similar-heading") == "Similar products"
    shown = page.eval_on_selector_all(
        "#similar-results li.card", "els => els.map(e => e.dataset.productId)"
    )
    api = httpx.get(f"{url}/api/products/{opened}/similar", params={"top_k": 6}).json()
    assert shown == [hit["product_id"] for hit in api["results"]]
    assert len(shown) == 6 and opened not in shown
    # A similar product's details open in place, with its own similar products.
    page.locator("#similar-results li.card button.details").first.click()
    page.wait_for_function(
        "(id) => document.getElementById('product-title').textContent !== 'Loading…' &&"
        " document.querySelector('#similar-results li.card') &&"
        " !Array.from(document.querySelectorAll('#similar-results li.card'))"
        "   .some((e) => e.dataset.productId === id)",
        arg=shown[0],
        timeout=15_000,
    )
    screenshot(page, "similar-products.png")


def test_one_result_per_product_family(page: Any, catalog_and_url: tuple[Path, str]) -> None:
    _, url = catalog_and_url
    page.goto(url + "/")
    page.fill("#query-text", "running sneakers")
    page.uncheck("#hybrid")
    page.fill("#top-k", "3")
    page.click("#search-button")
    assert len(result_ids(page)) == 3
    assert page.locator("#results li.card .variants").count() == 0  # one card per product
    page.check("#collapse")
    page.click("#search-button")
    page.wait_for_selector("#results li.card .variants", timeout=15_000)
    labels = page.eval_on_selector_all(
        "#results li.card .variants", "els => els.map(e => e.textContent)"
    )
    assert labels == ["+2 variants", "+2 variants"]
    hover = page.get_attribute("#results li.card .variants", "title")
    assert hover is not None and "Running Sneakers" in hover and len(hover.splitlines()) == 2
    # The similar row of an opened family member leaves its family out.
    first = result_ids(page)[0]
    page.locator("#results li.card button.details").first.click()
    page.wait_for_selector("#similar-results li.card", timeout=15_000)
    shown = page.eval_on_selector_all(
        "#similar-results li.card", "els => els.map(e => e.dataset.productId)"
    )
    number = int(first.removeprefix("B0SAMPLE"))
    family = {f"B0SAMPLE{i}" for i in range(19, 25) if i % 2 == number % 2}  # one brand's
    assert first in family and not family & set(shown) and len(shown) == 6
