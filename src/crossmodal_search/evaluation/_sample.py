"""A labelled query set and a tag vocabulary for the demo catalog.

:func:`write_sample_evaluation` reads the catalog written by
:func:`~crossmodal_search.search.write_sample_catalog` (six product kinds in six colours) and,
from each product's *metadata* (``color``, ``product_type``), writes under ``ROOT/eval/``:

* ``queries.jsonl``: text queries ("red dress": relevant the red dresses), exact-term queries
  a shopper types from a label or a box (a model number "RS-2424Y": that product; a brand and
  category "Carryall bag": that brand's bags; a size "20 oz mug": the mugs that size), image queries
  (simulated phone photos of catalog products: rotated, shifted, rescaled, blurred, noisy,
  never the indexed file; relevant the photographed product), text+image queries (a photo
  plus another colour word: the same kind in that colour, grade 2, the photographed product
  grade 1), side-photo queries (phone photos of products' extra photos, a close-up or the
  product in use: the product itself) and the catalog's own demo queries;
* ``tags.json``: a grouped vocabulary (``color`` with distractor colours, ``category``);
* ``gold_tags.json``: ``{product_id: [colour, category]}`` to measure tagging.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation._queries import LabelledQuery, write_queries
from crossmodal_search.search import Product

__all__ = ["CATEGORY_NAMES", "SampleEvaluation", "write_sample_evaluation"]

#: Shopper words for the sample catalog's ``product_type`` values (the category tag labels).
CATEGORY_NAMES: dict[str, str] = {
    "DRESS": "dress",
    "SHIRT": "t-shirt",
    "DRINKING_CUP": "mug",
    "SHOES": "sneakers",
    "LAMP": "lamp",
    "HANDBAG": "bag",
}
_DISTRACTOR_COLOURS = ("white", "orange", "pink", "brown")


@dataclass(frozen=True)
class SampleEvaluation:
    """Paths written by :func:`write_sample_evaluation` and what they hold."""

    queries: Path
    vocabulary: Path
    gold_tags: Path
    query_count: int


def _phone_photo(path: str, rng: random.Random) -> Image.Image:
    """A catalog image as a shopper's photo of the product: never byte-identical to it."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    corner = img.getpixel((1, 1))
    fill = (240, 240, 240)
    if isinstance(corner, tuple) and len(corner) >= 3:
        fill = (int(corner[0]), int(corner[1]), int(corner[2]))
    img = img.rotate(rng.uniform(-9, 9), resample=Image.Resampling.BICUBIC, fillcolor=fill)
    scale = rng.uniform(1.05, 1.2)
    big = img.resize((int(w * scale), int(h * scale)), Image.Resampling.BILINEAR)
    left = rng.randint(0, big.width - w)
    top = rng.randint(0, big.height - h)
    img = big.crop((left, top, left + w, top + h))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.4)))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.9, 1.08))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 9, (h, w, 3))
    pixels = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _colour(product_metadata: Mapping[str, object]) -> str | None:
    value = product_metadata.get("color")
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0].lower()
    if isinstance(value, str) and value:
        return value.lower()
    return None


def _exact_terms(product: Product) -> dict[str, str]:
    """A product's brand, model number and size (``15 oz``, from its title), when present."""
    out: dict[str, str] = {}
    for key in ("brand", "model_number"):
        value = product.metadata.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()
    size = re.search(r"\b(\d+(?:\.\d+)?) ?(oz|ml|cm|in)\b", product.title or "")
    if size:
        out["size"] = f"{size.group(1)} {size.group(2)}"
    return out


def _category(product_metadata: Mapping[str, object]) -> str | None:
    value = product_metadata.get("product_type")
    if not isinstance(value, str):
        return None
    return CATEGORY_NAMES.get(value, value.replace("_", " ").lower())


def write_sample_evaluation(
    root: str | os.PathLike[str], *, seed: int = 0, photos_per_kind: int = 2
) -> SampleEvaluation:
    """Write labelled queries, a tag vocabulary and gold tags for the sample catalog at ``root``.

    The output is deterministic for a given ``seed``.

    Args:
        root: A directory written by :func:`~crossmodal_search.search.write_sample_catalog`.
        seed: Chooses the photographed products and the photo distortions.
        photos_per_kind: Image (and text+image) queries per product kind.

    Raises:
        InvalidInputError: ``root`` is not a sample catalog (no products with colour and type).
    """
    from crossmodal_search.datasets import load_abo

    base = Path(root).expanduser().resolve()
    catalog = _Catalog.read(load_abo(base).products, base)
    rng = random.Random(seed)
    queries = catalog.text_queries()
    queries += catalog.exact_queries(rng)
    queries += catalog.photo_queries(base / "eval" / "photos", rng, photos_per_kind)
    queries += catalog.side_photo_queries(base / "eval" / "photos", rng)
    queries += _demo_queries(base)
    eval_dir = base / "eval"
    queries_path = write_queries(queries, eval_dir / "queries.jsonl")
    vocab_path, gold_path = catalog.write_tags(eval_dir)
    return SampleEvaluation(
        queries=queries_path, vocabulary=vocab_path, gold_tags=gold_path, query_count=len(queries)
    )


class _Catalog:
    """The sample catalog's products by colour and category, as queries are built from them."""

    def __init__(
        self,
        info: dict[str, tuple[str, str]],
        images: dict[str, str],
        words: dict[str, dict[str, str]] | None = None,
        extras: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.info = info
        self.images = images
        # Per product: its extra photos (``Product.images``), when it has some.
        self.extras = extras or {}
        # Per product: its "brand", "model_number" and "size" (the exact terms), when known.
        self.words = words or {}
        self.by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.by_kind: dict[str, list[str]] = defaultdict(list)
        for pid, (colour, category) in info.items():
            self.by_pair[(colour, category)].append(pid)
            self.by_kind[category].append(pid)
        self.colours = sorted({c for c, _ in info.values()})

    @classmethod
    def read(cls, products: Sequence[Product], base: Path) -> _Catalog:
        info: dict[str, tuple[str, str]] = {}
        words: dict[str, dict[str, str]] = {}
        for p in products:
            colour, category = _colour(p.metadata), _category(p.metadata)
            if colour and category:
                info[p.product_id] = (colour, category)
                words[p.product_id] = _exact_terms(p)
        if not info:
            raise InvalidInputError(f"{base}: no products with a colour and a product type")
        images = {p.product_id: p.image for p in products if p.image}
        return cls(info, images, words, {p.product_id: p.images for p in products if p.images})

    def exact_queries(self, rng: random.Random, per_kind: int = 2) -> list[LabelledQuery]:
        """What a shopper copies from a label: model numbers (that product), a brand with a
        category (the brand's products of it) and a size with a category (those products)."""
        queries: list[LabelledQuery] = []
        for category in sorted(self.by_kind):
            numbered = sorted(p for p in self.by_kind[category] if "model_number" in self.words[p])
            for pid in rng.sample(numbered, min(per_kind, len(numbered))):
                number = self.words[pid]["model_number"]
                queries.append(
                    LabelledQuery(
                        id=f"model-{number}", text=number, relevant={pid: 1.0}, kind="model number"
                    )
                )
        for term, kind in (("brand", "brand"), ("size", "size")):
            groups: dict[tuple[str, str], list[str]] = defaultdict(list)
            for pid, (_, category) in self.info.items():
                value = self.words[pid].get(term)
                if value:
                    groups[(value, category)].append(pid)
            for (value, category), pids in sorted(groups.items()):
                queries.append(
                    LabelledQuery(
                        id=f"{kind}-{value}-{category}".replace(" ", "-").lower(),
                        text=f"{value} {category}",
                        relevant=dict.fromkeys(sorted(pids), 1.0),
                        kind=kind,
                    )
                )
        return queries

    def text_queries(self) -> list[LabelledQuery]:
        """ "red dress" (the red dresses) and "something red" (everything red)."""
        queries = [
            LabelledQuery(
                id=f"text-{colour}-{category}",
                text=f"{colour} {category}",
                relevant=dict.fromkeys(self.by_pair[colour, category], 1.0),
                kind="colour+category",
            )
            for colour, category in sorted(self.by_pair)
        ]
        queries.extend(
            LabelledQuery(
                id=f"text-{colour}",
                text=f"something {colour}",
                relevant={pid: 1.0 for pid, (c, _) in self.info.items() if c == colour},
                kind="colour",
            )
            for colour in self.colours
        )
        return queries

    def photo_queries(
        self, photo_dir: Path, rng: random.Random, per_kind: int
    ) -> list[LabelledQuery]:
        """Phone photos of products (the product itself), and each with another colour word
        (that colour's products of the kind, grade 2; the photographed one, grade 1)."""
        photo_dir.mkdir(parents=True, exist_ok=True)
        queries: list[LabelledQuery] = []
        for category in sorted(self.by_kind):
            candidates = sorted(pid for pid in self.by_kind[category] if pid in self.images)
            for pid in rng.sample(candidates, min(per_kind, len(candidates))):
                photo = photo_dir / f"{pid}.jpg"
                _phone_photo(str(self.images[pid]), rng).save(photo, format="JPEG", quality=85)
                queries.append(
                    LabelledQuery(
                        id=f"photo-{pid}", image=str(photo), relevant={pid: 1.0}, kind="photo"
                    )
                )
                colour = self.info[pid][0]
                others = [c for c in self.colours if c != colour and (c, category) in self.by_pair]
                if not others:
                    continue
                wanted = rng.choice(others)
                relevant = dict.fromkeys(self.by_pair[wanted, category], 2.0)
                relevant[pid] = 1.0
                queries.append(
                    LabelledQuery(
                        id=f"photo-{pid}-in-{wanted}",
                        text=wanted,
                        image=str(photo),
                        relevant=relevant,
                        kind="photo+colour",
                    )
                )
        return queries

    def side_photo_queries(self, photo_dir: Path, rng: random.Random) -> list[LabelledQuery]:
        """Phone photos of products' extra photos (a close-up, the product in use): the
        product itself is relevant. Searching every photo finds it by that photo; the main
        photo alone often does not."""
        queries: list[LabelledQuery] = []
        for pid in sorted(self.extras):
            for n, extra in enumerate(self.extras[pid], 2):
                photo = photo_dir / f"{pid}-photo{n}.jpg"
                _phone_photo(extra, rng).save(photo, format="JPEG", quality=85)
                queries.append(
                    LabelledQuery(
                        id=f"photo{n}-{pid}",
                        image=str(photo),
                        relevant={pid: 1.0},
                        kind="side photo",
                    )
                )
        return queries

    def write_tags(self, eval_dir: Path) -> tuple[Path, Path]:
        """The tag vocabulary (colours with distractors, categories) and the gold tags."""
        vocab = {
            "template": "a photo of a {label} product",
            "groups": {
                "color": self.colours + [c for c in _DISTRACTOR_COLOURS if c not in self.colours],
                "category": sorted({cat for _, cat in self.info.values()}),
            },
        }
        vocab_path = eval_dir / "tags.json"
        vocab_path.write_text(json.dumps(vocab, indent=2) + "\n", encoding="utf-8")
        gold_path = eval_dir / "gold_tags.json"
        gold = {pid: [c, cat] for pid, (c, cat) in sorted(self.info.items())}
        text = json.dumps(gold, indent=2, ensure_ascii=False) + "\n"
        gold_path.write_text(text, encoding="utf-8")
        return vocab_path, gold_path


def _demo_queries(base: Path) -> list[LabelledQuery]:
    """The catalog's own demo queries (``queries.json``), each with its expected product."""
    from crossmodal_search.datasets import load_sample_queries

    try:
        demo = load_sample_queries(base)
    except (OSError, ValueError, TypeError):
        demo = []
    queries = []
    for q in demo:
        image = q.image_path(base)
        queries.append(
            LabelledQuery(
                id=f"demo-{q.name}",
                text=q.text,
                image=None if image is None else str(image),
                relevant={q.expected: 1.0},
                kind="demo",
            )
        )
    return queries
