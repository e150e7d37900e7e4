"""ABO loader, JSON-lines loader, Product validation and the sample catalog."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from crossmodal_search.datasets import (
    SAMPLE_QUERIES,
    load_abo,
    load_sample_queries,
    write_sample_catalog,
)
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search import (
    Product,
    load_products,
)


def _lang(value: str, tag: str | None = "en_US") -> dict[str, Any]:
    return {"language_tag": tag, "value": value}


def _write_abo(
    root: Path,
    shards: list[list[Any]],
    images: dict[str, str],
    *,
    files: bool = True,
) -> Path:
    meta = root / "listings" / "metadata"
    meta.mkdir(parents=True)
    for i, shard in enumerate(shards):
        lines = [x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in shard]
        with gzip.open(meta / f"listings_{i}.json.gz", "wt", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    img_meta = root / "images" / "metadata"
    img_meta.mkdir(parents=True)
    with gzip.open(img_meta / "images.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write("image_id,height,width,path\n")
        for image_id, rel in images.items():
            fh.write(f"{image_id},256,256,{rel}\n")
            if files:
                target = root / "images" / "small" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"jpeg bytes")
    return root


def test_english_name_preferred_then_any_language(tmp_path: Path) -> None:
    root = _write_abo(
        tmp_path,
        [
            [
                {
                    "item_id": "A",
                    "item_name": [_lang("Rote Tasse", "de_DE"), _lang("Red mug (UK)", "en_GB")],
                },
                {
                    "item_id": "B",
                    "item_name": [
                        _lang("Mug rouge", "fr_FR"),
                        _lang("Red mug (UK)", "en_GB"),
                        _lang("Red mug", "en_US"),
                    ],
                    "bullet_point": [
                        _lang("Spülmaschinenfest", "de_DE"),
                        _lang("Dishwasher safe"),
                        _lang("Holds 15 oz"),
                    ],
                },
                {"item_id": "C", "item_name": [_lang("赤いマグカップ", "ja_JP")]},
                {"item_id": "D", "item_name": [_lang("Untagged name", None)]},
            ]
        ],
        {},
    )
    catalog = load_abo(root)
    by_id = {p.product_id: p for p in catalog.products}
    assert by_id["A"].text == "Red mug (UK)"
    assert by_id["A"].metadata["language"] == "en_GB"
    assert by_id["B"].text == "Red mug\nDishwasher safe\nHolds 15 oz"
    assert by_id["C"].text == "赤いマグカップ" and by_id["C"].metadata["language"] == "ja_JP"
    assert by_id["D"].text == "Untagged name" and "language" not in by_id["D"].metadata


def test_metadata_fields_and_main_image(tmp_path: Path) -> None:
    root = _write_abo(
        tmp_path,
        [
            [
                {
                    "item_id": "B074",
                    "item_name": [_lang("Case")],
                    "brand": [_lang("Marke", "de_DE"), _lang("Brand")],
                    "product_type": [{"value": "CELLULAR_PHONE_CASE"}],
                    "color": [
                        {"language_tag": "en_US", "value": "Navy", "standardized_values": ["Blue"]},
                        {"language_tag": "de_DE", "value": "Blau", "standardized_values": ["Blue"]},
                        {"language_tag": "en_US", "value": "Gold", "standardized_values": ["Gold"]},
                    ],
                    "country": "US",
                    "main_image_id": "81iZ",
                }
            ]
        ],
        {"81iZ": "14/14fe8812.jpg"},
    )
    (product,) = load_abo(root).products
    assert product.image == str(root / "images" / "small" / "14" / "14fe8812.jpg")
    assert product.metadata == {
        "brand": "Brand",
        "product_type": "CELLULAR_PHONE_CASE",
        "color": ["blue", "gold"],
        "language": "en_US",
        "country": "US",
    }


def test_skips_counts_duplicates_missing_images_and_malformed_lines(tmp_path: Path) -> None:
    root = _write_abo(
        tmp_path,
        [
            [
                {"item_id": "ok", "item_name": [_lang("Lamp")], "main_image_id": "i1"},
                {"item_id": "empty"},
                {"item_id": "image-only", "main_image_id": "i2"},
                {"item_id": "unknown-image", "item_name": [_lang("Bag")], "main_image_id": "zz"},
                {"item_id": "unknown-image-no-text", "main_image_id": "zz"},
                "{not json",
                {"item_name": [_lang("no id")]},
                "[1, 2]",
            ],
            [
                {"item_id": "ok", "item_name": [_lang("Lamp again")]},
                {"item_id": "no-file", "item_name": [_lang("Shoe")], "main_image_id": "i3"},
            ],
        ],
        {"i1": "aa/aaaaaaaa.jpg", "i2": "bb/bbbbbbbb.jpg"},
    )
    # i3 is in the CSV but its file is not on disk.
    with gzip.open(root / "images" / "metadata" / "images.csv.gz", "at", encoding="utf-8") as fh:
        fh.write("i3,256,256,cc/cccccccc.jpg\n")
    catalog = load_abo(root)
    assert [p.product_id for p in catalog.products] == [
        "ok",
        "image-only",
        "unknown-image",
        "no-file",
    ]
    assert catalog.products[0].text == "Lamp"  # the first occurrence wins
    assert catalog.products[1].text == "" and catalog.products[1].image is not None
    assert catalog.products[2].image is None and catalog.products[3].image is None
    assert catalog.skipped_no_content == 2
    assert catalog.duplicates == 1
    assert catalog.missing_images == 3
    assert catalog.malformed == 3


def test_limit_and_s3_image_root(tmp_path: Path) -> None:
    listings = [
        {"item_id": f"P{i}", "item_name": [_lang(f"Item {i}")], "main_image_id": f"i{i}"}
        for i in range(5)
    ]
    root = _write_abo(
        tmp_path, [listings], {f"i{i}": f"0{i}/0{i}abcdef.jpg" for i in range(5)}, files=False
    )
    catalog = load_abo(root, limit=2, image_root="s3://amazon-berkeley-objects/images/small/")
    assert [p.product_id for p in catalog.products] == ["P0", "P1"]
    assert catalog.products[1].image == "s3://amazon-berkeley-objects/images/small/01/01abcdef.jpg"
    assert catalog.missing_images == 0
    assert load_abo(root, limit=0).products == []


def test_long_bullets_are_capped(tmp_path: Path) -> None:
    bullets = [_lang("x" * 600) for _ in range(10)]
    root = _write_abo(
        tmp_path, [[{"item_id": "L", "item_name": [_lang("Long")], "bullet_point": bullets}]], {}
    )
    (product,) = load_abo(root).products
    assert product.text.count("\n") == 2  # name + the two bullets that fit in 1500 characters
    huge = tmp_path / "huge"
    _write_abo(
        huge,
        [[{"item_id": "H", "item_name": [_lang("Huge")], "bullet_point": [_lang("y" * 9000)]}]],
        {},
    )
    (product,) = load_abo(huge).products
    assert product.text == "Huge\n" + "y" * 1499 + "…"


def test_not_an_abo_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not an ABO catalog"):
        load_abo(tmp_path)
    with pytest.raises(InvalidInputError, match="limit"):
        load_abo(tmp_path, limit=-1)
    bad = tmp_path / "bad" / "listings" / "metadata"
    bad.mkdir(parents=True)
    (bad / "listings_0.json.gz").write_bytes(b"not gzip")
    with pytest.raises(InvalidInputError, match=r"listings_0\.json\.gz"):
        load_abo(tmp_path / "bad")


# ------------------------------------------------------------------------- JSON lines


def test_load_products_resolves_relative_images(tmp_path: Path) -> None:
    path = tmp_path / "products.jsonl"
    lines: list[dict[str, Any]] = [
        {"product_id": "p1", "text": "Blue mug", "image": "img/p1.jpg", "metadata": {"n": 1}},
        {"product_id": "p2", "text": "Remote", "image": "s3://bucket/p2.jpg"},
        {"product_id": "p3", "text": "Text only"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    products = load_products(path)
    assert [p.image for p in products] == [
        str(tmp_path / "img" / "p1.jpg"),
        lines[1]["image"],
        None,
    ]
    assert products[0].metadata == {"n": 1}
    assert len(load_products(path, limit=1)) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "products.jsonl:2: not valid JSON"),
        ('{"product_id": "", "text": "x"}', "products.jsonl:2: product_id"),
        ('{"product_id": "z"}', "neither text nor image"),
        ('{"product_id": "z", "text": "x", "metadata": {"type": "t"}}', "reserved"),
        ('{"product_id": "a", "text": "again"}', "duplicate product_id 'a'"),
    ],
)
def test_load_products_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "products.jsonl"
    path.write_text('{"product_id": "a", "text": "first"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message):
        load_products(path)


def test_load_products_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_products(tmp_path / "none.jsonl")


def test_product_validation(tmp_path: Path) -> None:
    as_path = Product(product_id="p", image=tmp_path / "x.jpg")
    assert as_path.image == str(tmp_path / "x.jpg")
    assert Product(product_id="p", text="t", image="").image is None
    for bad in (
        {"product_id": " ", "text": "t"},
        {"product_id": "p"},
        {"product_id": "p", "text": "  "},
        {"product_id": "p", "text": "t", "metadata": {"content_hash": "x"}},
        {"product_id": "p" * 1001, "text": "t"},
        {"product_id": "p", "text": "t", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            Product(**bad)
    with pytest.raises(ValidationError):
        Product(product_id="p", text="t").text = "changed"


# ------------------------------------------------------------------------- sample catalog


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_sample_catalog_is_deterministic_and_abo_shaped(tmp_path: Path) -> None:
    a = write_sample_catalog(tmp_path / "a")
    b = write_sample_catalog(tmp_path / "b")
    assert _tree_digest(a) == _tree_digest(b)

    catalog = load_abo(a)
    assert len(catalog.products) == 38
    assert (catalog.skipped_no_content, catalog.duplicates, catalog.missing_images) == (1, 0, 0)
    by_id = {p.product_id: p for p in catalog.products}
    assert by_id["B0SAMPLE03"].text.startswith("Daisy Row Women's Green Summer Midi Dress")
    assert by_id["B0SAMPLE08"].metadata["language"] == "en_GB"
    assert by_id["B0SAMPLEDE"].metadata["language"] == "de_DE"
    assert by_id["B0SAMPLEJP"].metadata["color"] == ["yellow"]
    colours = {c for p in catalog.products for c in p.metadata["color"]}  # type: ignore[union-attr]
    assert colours == {"red", "yellow", "green", "blue", "purple", "black"}
    assert len({p.metadata["product_type"] for p in catalog.products}) == 6

    from PIL import Image

    with Image.open(by_id["B0SAMPLE22"].image or "") as img:
        assert img.size == (256, 256) and img.format == "JPEG"

    queries = load_sample_queries(a)
    assert [q.name for q in queries] == [q.name for q in SAMPLE_QUERIES]
    assert queries == list(SAMPLE_QUERIES)
    photo = SAMPLE_QUERIES[1].image_path(a)
    assert photo is not None and photo.is_file()
    catalog_digests = {
        hashlib.sha256(Path(p.image).read_bytes()).hexdigest() for p in catalog.products if p.image
    }
    assert hashlib.sha256(photo.read_bytes()).hexdigest() not in catalog_digests
    assert all(q.expected in by_id for q in SAMPLE_QUERIES)


def test_product_takes_id_and_text_positionally_and_raises_our_error() -> None:
    assert Product("p1", "red dress") == Product(product_id="p1", text="red dress")
    assert Product("p1", "red dress", metadata={"color": "red"}).metadata == {"color": "red"}
    with pytest.raises(InvalidInputError, match=r"^invalid product: text: Input should be a valid"):
        Product("p1", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as info:
        Product("p1", "t", metadata={"content_hash": "x", "ok": [1, {}]})  # type: ignore[list-item]
    assert str(info.value) == (
        "invalid product: metadata['ok']: must be a string, number, boolean or a list of those"
    )
    assert isinstance(info.value, ValueError) and isinstance(info.value, ValidationError)
    with pytest.raises(InvalidInputError, match=r"^invalid product: product_id: .* not be blank"):
        Product(" ", "t")
    with pytest.raises(InvalidInputError, match="has neither text nor image"):
        Product("p")


def test_image_root_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    root = write_sample_catalog(tmp_path / "catalog")
    with pytest.raises(InvalidInputError, match=r"image root not found: .*nowhere"):
        load_abo(root, image_root=tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="image root is not a directory"):
        load_abo(root, image_root=root / "listings" / "metadata" / "listings_0.json.gz")


def test_every_image_missing_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_sample_catalog(tmp_path / "catalog")
    (tmp_path / "empty").mkdir()
    with caplog.at_level("WARNING", logger="crossmodal_search.search"):
        catalog = load_abo(root, image_root=tmp_path / "empty")
    assert catalog.missing_images == len(catalog.products) == 38
    assert all(p.image is None for p in catalog.products)
    assert any("none of the 38 images" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="crossmodal_search.search"):
        assert load_abo(root).missing_images == 0
    assert not caplog.records
