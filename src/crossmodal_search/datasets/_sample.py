"""A small, deterministic sample catalog in the Amazon Berkeley Objects layout.

``crossmodal demo``, the docs and the tests use it: 36 English listings (six product kinds in six
clearly distinct colours, each with a Pillow-drawn photo on a light background; each brand's
sneakers are one model in three colours, a variant family; the bags have two more photos, a
close-up and the bag carried in a street scene), two listings
whose names exist only in German or Japanese, one whose English name is ``en_GB``, one listing
with no content at all (the loader skips and counts it) and query photos that are re-rendered,
shifted, rotated and noisy variants of catalog items (never the indexed file itself).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["SAMPLE_QUERIES", "SampleQuery", "load_sample_queries", "write_sample_catalog"]

_RGB = tuple[int, int, int]
_Draw = Callable[[ImageDraw.ImageDraw, float, float, float, _RGB], None]

_SIZE = 256
_BACKGROUND: _RGB = (244, 243, 239)

_COLORS: tuple[tuple[str, _RGB], ...] = (
    ("Red", (205, 32, 38)),
    ("Yellow", (242, 202, 24)),
    ("Green", (34, 146, 62)),
    ("Blue", (32, 84, 204)),
    ("Purple", (124, 48, 166)),
    ("Black", (28, 28, 30)),
)


def _poly(
    cx: float, cy: float, s: float, pts: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    return [(cx + x * s, cy + y * s) for x, y in pts]


def _draw_dress(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, c: _RGB) -> None:
    d.line(_poly(cx, cy, s, [(-22, -100), (-26, -72)]), fill=c, width=max(2, int(5 * s)))
    d.line(_poly(cx, cy, s, [(22, -100), (26, -72)]), fill=c, width=max(2, int(5 * s)))
    body = [(-30, -72), (30, -72), (24, -20), (80, 100), (-80, 100), (-24, -20)]
    d.polygon(_poly(cx, cy, s, body), fill=c)


def _draw_shirt(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, c: _RGB) -> None:
    pts = [
        (-30, -85),
        (-95, -60),
        (-118, -8),
        (-80, 6),
        (-60, -24),
        (-60, 92),
        (60, 92),
        (60, -24),
        (80, 6),
        (118, -8),
        (95, -60),
        (30, -85),
        (0, -68),
    ]
    d.polygon(_poly(cx, cy, s, pts), fill=c)


def _draw_mug(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, c: _RGB) -> None:
    handle = _poly(cx, cy, s, [(30, -40), (100, 40)])
    d.ellipse((*handle[0], *handle[1]), outline=c, width=max(3, int(16 * s)))
    body = _poly(cx, cy, s, [(-60, -70), (50, 75)])
    d.rectangle((*body[0], *body[1]), fill=c)
    rim = _poly(cx, cy, s, [(-60, -80), (50, -60)])
    lighter = (min(255, c[0] + 40), min(255, c[1] + 40), min(255, c[2] + 40))
    d.ellipse((*rim[0], *rim[1]), fill=lighter)


def _draw_sneaker(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, c: _RGB) -> None:
    upper = [
        (-110, 25),
        (-104, -18),
        (-45, -30),
        (-5, -62),
        (28, -58),
        (62, -20),
        (108, 0),
        (114, 25),
    ]
    d.polygon(_poly(cx, cy, s, upper), fill=c)
    sole = _poly(cx, cy, s, [(-114, 25), (118, 48)])
    d.rectangle((*sole[0], *sole[1]), fill=(236, 236, 236), outline=(150, 150, 150))
    for i in range(3):
        x = -4 + 14 * i
        d.line(_poly(cx, cy, s, [(x, -50 + 8 * i), (x + 14, -34 + 8 * i)]), fill=(240, 240, 240))


def _draw_lamp(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, c: _RGB) -> None:
    d.polygon(_poly(cx, cy, s, [(-60, -95), (60, -95), (92, -12), (-92, -12)]), fill=c)
    stem = _poly(cx, cy, s, [(-6, -12), (6, 78)])
    d.rectangle((*stem[0], *stem[1]), fill=(96, 96, 96))
    base = _poly(cx, cy, s, [(-52, 70), (52, 98)])
    d.ellipse((*base[0], *base[1]), fill=c)


def _draw_bag(d: ImageDraw.ImageDraw, cx: float, cy: float, s: float, c: _RGB) -> None:
    handle = _poly(cx, cy, s, [(-50, -95), (50, 5)])
    d.arc((*handle[0], *handle[1]), start=180, end=360, fill=c, width=max(3, int(11 * s)))
    d.polygon(_poly(cx, cy, s, [(-82, -45), (82, -45), (102, 88), (-102, 88)]), fill=c)


@dataclass(frozen=True)
class _Kind:
    slug: str
    product_type: str
    draw: _Draw
    brands: tuple[str, str]
    name: str
    bullets: tuple[str, ...]
    model_prefix: str = ""
    #: ABO ``model_name``: each brand's listings of this kind are one product in three colours
    #: (``load_abo(variants_from="model_name")``: a variant group per brand).
    model_name: str = ""


#: Mug capacities, by colour (the catalog's sizes: exact terms a shopper types).
_MUG_SIZES = ("12 oz", "15 oz", "20 oz")


def model_number(kind_index: int, color_index: int) -> str:
    """The model number of the sample product of kind ``kind_index`` and colour
    ``color_index`` (``RS-2413B``: an exact term only full-text search can match)."""
    kind, (color, _) = _KINDS[kind_index], _COLORS[color_index]
    return f"{kind.model_prefix}-{2400 + 7 * kind_index + 3 * color_index}{color[0]}"


_KINDS: tuple[_Kind, ...] = (
    _Kind(
        "dress",
        "DRESS",
        _draw_dress,
        ("Lumen & Lace", "Daisy Row"),
        "{brand} Women's {color} Summer Midi Dress, Sleeveless A-Line",
        (
            "Lightweight breathable fabric for warm summer days",
            "Sleeveless A-line cut with a fitted waist and flowing skirt",
            "Machine washable; {color_lower} colour that does not fade",
        ),
        "DR",
    ),
    _Kind(
        "shirt",
        "SHIRT",
        _draw_shirt,
        ("Northfield", "Basic Thread"),
        "{brand} Men's {color} Cotton T-Shirt, Crew Neck, Short Sleeve",
        (
            "100% cotton jersey, soft and durable",
            "Classic crew neck t-shirt with short sleeves",
            "Solid {color_lower} colour, regular fit",
        ),
        "TS",
    ),
    _Kind(
        "mug",
        "DRINKING_CUP",
        _draw_mug,
        ("Kiln & Co", "Morning Ritual"),
        "{brand} {color} Ceramic Coffee Mug, {size}",
        (
            "Stoneware mug for coffee, tea and cocoa",
            "Large comfortable handle; dishwasher and microwave safe",
            "Glossy {color_lower} glaze",
        ),
        "MG",
    ),
    _Kind(
        "sneakers",
        "SHOES",
        _draw_sneaker,
        ("Stride Lab", "Pacer"),
        "{brand} {color} Running Sneakers, Lightweight Mesh Trainers",
        (
            "Breathable mesh upper with lace-up closure",
            "Cushioned white rubber sole for running and walking",
            "{color} athletic shoes for men and women",
        ),
        "RS",
        "AirMesh Runner",
    ),
    _Kind(
        "lamp",
        "LAMP",
        _draw_lamp,
        ("Lumina Home", "Nook"),
        "{brand} {color} Table Lamp with Fabric Shade",
        (
            "Bedside desk lamp with a {color_lower} drum shade",
            "Metal stem and weighted round base",
            "E26 socket, bulb not included",
        ),
        "TL",
    ),
    _Kind(
        "bag",
        "HANDBAG",
        _draw_bag,
        ("Carryall", "Atelier Nord"),
        "{brand} {color} Leather Tote Bag with Top Handles",
        (
            "Roomy tote handbag in soft vegan leather",
            "Two sturdy top handles and an inner zip pocket",
            "{color} bag for work, shopping and travel",
        ),
        "TB",
    ),
)


@dataclass(frozen=True)
class SampleQuery:
    """A demo query over the sample catalog.

    Attributes:
        name: Short label (``"text"``, ``"image"``, ``"text+image"``).
        text: The query text, if any.
        image: Path of the query photo relative to the catalog root, if any.
        expected: The product id a good search ranks first.
        description: What the query stands for, for humans.
        search_mode: The ``search_mode`` the demo uses for it.
        text_weight: The ``text_weight`` the demo uses for it.
    """

    name: str
    text: str | None
    image: str | None
    expected: str
    description: str
    search_mode: Literal["text", "image", "combined", "all"] = "combined"
    text_weight: float = 0.5

    def image_path(self, root: str | os.PathLike[str]) -> Path | None:
        """Absolute path of the query photo inside the catalog written at ``root``."""
        return None if self.image is None else Path(root) / self.image


def _item_id(index: int) -> str:
    return f"B0SAMPLE{index:02d}"


def _product_id(kind: str, color: str) -> str:
    k = next(i for i, x in enumerate(_KINDS) if x.slug == kind)
    c = next(i for i, (name, _) in enumerate(_COLORS) if name.lower() == color)
    return _item_id(1 + k * len(_COLORS) + c)


#: The demo's queries: a text, a photo, a photo plus a text refinement, and a model number.
SAMPLE_QUERIES: tuple[SampleQuery, ...] = (
    SampleQuery(
        name="text",
        text="red summer dress",
        image=None,
        expected=_product_id("dress", "red"),
        description='a shopper types "red summer dress"',
    ),
    SampleQuery(
        name="image",
        text=None,
        image="queries/photo-blue-sneakers.jpg",
        expected=_product_id("sneakers", "blue"),
        description="a phone photo of blue sneakers (shifted, rotated, noisy; not a catalog file)",
        search_mode="image",
    ),
    SampleQuery(
        name="text+image",
        text="in green",
        image="queries/photo-blue-sneakers.jpg",
        expected=_product_id("sneakers", "green"),
        description='the photo of blue sneakers plus the words "in green", against product '
        "photos: that shoe, in green",
        search_mode="image",
        text_weight=0.6,
    ),
    SampleQuery(
        name="exact",
        text=model_number(3, 2),
        image=None,
        expected=_product_id("sneakers", "green"),
        description="a shopper types the model number from a shoe box: hybrid search finds it "
        "by its words, meaning alone does not",
    ),
)


def _render(kind: _Kind, rgb: _RGB, seed: str, *, photo: bool = False) -> Image.Image:
    rng = random.Random(seed)
    background = _BACKGROUND
    if photo:
        background = (226, 229, 234)
    img = Image.new("RGB", (_SIZE, _SIZE), background)
    draw = ImageDraw.Draw(img)
    scale = rng.uniform(0.92, 1.04) if not photo else 0.84
    cx = _SIZE / 2 + rng.uniform(-8, 8) + (6 if photo else 0)
    cy = _SIZE / 2 + rng.uniform(-8, 8) + (4 if photo else 0)
    kind.draw(draw, cx, cy, scale, rgb)
    if photo:
        img = img.rotate(7, resample=Image.Resampling.BICUBIC, fillcolor=background)
        img = img.filter(ImageFilter.GaussianBlur(1.2))
        noise = np.random.default_rng(7).normal(0.0, 9.0, (_SIZE, _SIZE, 3))
        pixels = np.asarray(img, dtype=np.float64) + noise
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        img = img.resize((320, 320), Image.Resampling.BILINEAR).crop((16, 36, 304, 272))
    return img


#: The extra photos of the sample's bags (``other_image_id``).
_VIEWS = ("detail", "carried")


def _render_view(kind: _Kind, rgb: _RGB, seed: str, view: str) -> Image.Image:
    """An extra photo of a product: a close-up (``detail``), or the product small in the
    lower corner of a darker scene (``carried``)."""
    rng = random.Random(seed + view)
    if view == "detail":
        img = Image.new("RGB", (_SIZE, _SIZE), _BACKGROUND)
        draw = ImageDraw.Draw(img)
        kind.draw(draw, _SIZE / 2 + rng.uniform(-6, 6), _SIZE * 0.2, 2.6, rgb)
        light = (min(255, rgb[0] + 70), min(255, rgb[1] + 70), min(255, rgb[2] + 70))
        for x in range(12, _SIZE - 12, 18):  # the stitching along a seam
            draw.line((x, _SIZE * 0.62, x + 9, _SIZE * 0.62), fill=light, width=3)
        return img
    img = Image.new("RGB", (_SIZE, _SIZE), (92, 98, 108))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, int(_SIZE * 0.78), _SIZE, _SIZE), fill=(132, 128, 120))  # pavement
    kind.draw(draw, _SIZE * 0.27 + rng.uniform(-4, 4), _SIZE * 0.7, 0.42, rgb)
    return img


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _lang(value: str, tag: str = "en_US") -> dict[str, str]:
    return {"language_tag": tag, "value": value}


def _write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def write_sample_catalog(directory: str | os.PathLike[str]) -> Path:
    """Write the sample catalog (ABO layout, generated JPEGs) under ``directory`` and return it.

    The output is byte-for-byte deterministic. Besides ``listings/`` and ``images/`` it writes the
    query photos under ``queries/`` and ``queries.json`` describing :data:`SAMPLE_QUERIES`.

    Example:
        >>> root = write_sample_catalog(tmp_path)  # doctest: +SKIP
        >>> len(load_abo(root).products)  # doctest: +SKIP
        38
    """
    root = Path(directory).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    writer = _CatalogWriter(root)
    listings = writer.grid_listings() + writer.foreign_listings()
    # No name, no bullets, no image: the loader skips it and counts it.
    listings.append({"item_id": "B0SAMPLE00", "country": "US", "domain_name": "amazon.com"})
    writer.write(listings)
    _write_queries(root)
    return root


class _CatalogWriter:
    """Writes the listings shards, the images and their CSV of one sample catalog."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._images: list[tuple[str, int, int, str]] = []

    def add_image(self, item_id: str, img: Image.Image, view: str = "") -> str:
        """Write one product image (``view``: which of its photos); its ABO image id."""
        digest = hashlib.sha1((item_id + view).encode()).hexdigest()
        image_id = f"{digest[:8]}L"
        rel = f"{digest[:2]}/{digest[:8]}.jpg"
        target = self._root / "images" / "small" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_jpeg(img))
        self._images.append((image_id, img.height, img.width, rel))
        return image_id

    def grid_listings(self) -> list[dict[str, object]]:
        """Every product kind in every colour, in English (one name in en_GB, one listing
        whose first name is French)."""
        listings: list[dict[str, object]] = []
        index = 0
        for k, kind in enumerate(_KINDS):
            for c, (color, rgb) in enumerate(_COLORS):
                index += 1
                item_id = _item_id(index)
                brand = kind.brands[index % 2]
                fields = {
                    "brand": brand,
                    "color": color,
                    "color_lower": color.lower(),
                    "size": _MUG_SIZES[c % len(_MUG_SIZES)],
                }
                name_tag = "en_GB" if index == 8 else "en_US"
                listing: dict[str, object] = {
                    "item_id": item_id,
                    "brand": [_lang(brand)],
                    "item_name": [_lang(kind.name.format(**fields), name_tag)],
                    "bullet_point": [_lang(b.format(**fields)) for b in kind.bullets],
                    "color": [
                        {"language_tag": "en_US", "value": color, "standardized_values": [color]}
                    ],
                    "product_type": [{"value": kind.product_type}],
                    "model_number": [{"value": model_number(k, c)}],
                    "country": "US",
                    "domain_name": "amazon.com",
                    "main_image_id": self.add_image(item_id, _render(kind, rgb, item_id)),
                }
                if kind.model_name:
                    listing["model_name"] = [_lang(kind.model_name)]
                if kind.slug == "bag":
                    # More photos: a close-up of the leather and the bag carried, small, in a
                    # street scene (a shopper's photo of either finds the bag by that photo).
                    listing["other_image_id"] = [
                        self.add_image(item_id, _render_view(kind, rgb, item_id, view), view)
                        for view in _VIEWS
                    ]
                if index == 3:
                    # A listing whose first name is French: the loader must still pick English.
                    listing["item_name"] = [
                        _lang("Robe midi d'été verte", "fr_FR"),
                        _lang(kind.name.format(**fields)),
                    ]
                listings.append(listing)
        return listings

    def foreign_listings(self) -> list[dict[str, object]]:
        """A German mug and a Japanese pair of sneakers (no English at all)."""
        mug = next(k for k in _KINDS if k.slug == "mug")
        sneakers = next(k for k in _KINDS if k.slug == "sneakers")
        german: dict[str, object] = {
            "item_id": "B0SAMPLEDE",
            "brand": [_lang("Küchenfreund", "de_DE")],
            "item_name": [_lang("Rote Kaffeetasse aus Keramik, 450 ml", "de_DE")],
            "bullet_point": [_lang("Spülmaschinenfest, für Kaffee und Tee", "de_DE")],
            "color": [{"language_tag": "de_DE", "value": "Rot", "standardized_values": ["Red"]}],
            "product_type": [{"value": mug.product_type}],
            "country": "DE",
            "main_image_id": self.add_image("B0SAMPLEDE", _render(mug, _COLORS[0][1], "de")),
        }
        japanese: dict[str, object] = {
            "item_id": "B0SAMPLEJP",
            "brand": [_lang("ハヤテ", "ja_JP")],
            "item_name": [_lang("ランニングシューズ 黄色 軽量 メッシュ", "ja_JP")],
            "color": [
                {"language_tag": "ja_JP", "value": "黄色", "standardized_values": ["Yellow"]}
            ],
            "product_type": [{"value": sneakers.product_type}],
            "country": "JP",
            "main_image_id": self.add_image("B0SAMPLEJP", _render(sneakers, _COLORS[1][1], "jp")),
        }
        return [german, japanese]

    def write(self, listings: list[dict[str, object]]) -> None:
        """The listings in two shards, and the images CSV."""
        half = len(listings) // 2
        for shard, chunk in enumerate((listings[:half], listings[half:])):
            _write_gz(
                self._root / "listings" / "metadata" / f"listings_{shard}.json.gz",
                "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in chunk),
            )
        csv_buf = io.StringIO()
        writer = csv.writer(csv_buf, lineterminator="\n")
        writer.writerow(["image_id", "height", "width", "path"])
        writer.writerows(self._images)
        _write_gz(self._root / "images" / "metadata" / "images.csv.gz", csv_buf.getvalue())


def _write_queries(root: Path) -> None:
    """The demo's query photo and ``queries.json`` describing :data:`SAMPLE_QUERIES`."""
    sneakers = next(k for k in _KINDS if k.slug == "sneakers")
    photo = _render(sneakers, _COLORS[3][1], "photo", photo=True)
    photo_path = root / "queries" / "photo-blue-sneakers.jpg"
    photo_path.parent.mkdir(parents=True, exist_ok=True)
    photo_path.write_bytes(_jpeg(photo, quality=80))
    described = [
        {
            "name": q.name,
            "text": q.text,
            "image": q.image,
            "expected": q.expected,
            "description": q.description,
            "search_mode": q.search_mode,
            "text_weight": q.text_weight,
        }
        for q in SAMPLE_QUERIES
    ]
    text = json.dumps(described, indent=2, ensure_ascii=False) + "\n"
    (root / "queries.json").write_text(text, encoding="utf-8")


def load_sample_queries(root: str | os.PathLike[str]) -> list[SampleQuery]:
    """The queries recorded in ``ROOT/queries.json`` by :func:`write_sample_catalog`."""
    data = json.loads((Path(root) / "queries.json").read_text(encoding="utf-8"))
    return [SampleQuery(**item) for item in data]
