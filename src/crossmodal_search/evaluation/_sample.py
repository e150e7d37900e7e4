"""A labelled query set and a tag vocabulary for the demo catalog.

:func:`write_sample_evaluation` reads the catalog written by
:func:`~crossmodal_search.search.write_sample_catalog` (six product kinds in six colours) and,
from each product's *metadata* (``color``, ``product_type``), writes under ``ROOT/eval/``:

* ``queries.jsonl``: text queries ("red dress": relevant the red dresses), image queries
  (simulated phone photos of catalog products: rotated, shifted, rescaled, blurred, noisy,
  never the indexed file; relevant the photographed product), text+image queries (a photo
  plus another colour word: the same kind in that colour, grade 2, the photographed product
  grade 1) and the catalog's own demo queries;
* ``tags.json``: a grouped vocabulary (``color`` with distractor colours, ``category``);
* ``gold_tags.json``: ``{product_id: [colour, category]}`` to measure tagging.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation._queries import LabelledQuery, write_queries

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
    from crossmodal_search.datasets import (
        load_abo,
        load_sample_queries,
    )

    base = Path(root).expanduser().resolve()
    products = load_abo(base).products
    rng = random.Random(seed)
    info: dict[str, tuple[str, str]] = {}
    for p in products:
        colour, category = _colour(p.metadata), _category(p.metadata)
        if colour and category:
            info[p.product_id] = (colour, category)
    if not info:
        raise InvalidInputError(f"{base}: no products with a colour and a product type")
    by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_kind: dict[str, list[str]] = defaultdict(list)
    for pid, (colour, category) in info.items():
        by_pair[(colour, category)].append(pid)
        by_kind[category].append(pid)
    colours = sorted({c for c, _ in info.values()})
    images = {p.product_id: p.image for p in products if p.image}

    queries: list[LabelledQuery] = []
    for colour, category in sorted(by_pair):
        queries.append(
            LabelledQuery(
                id=f"text-{colour}-{category}",
                text=f"{colour} {category}",
                relevant=dict.fromkeys(by_pair[colour, category], 1.0),
                kind="colour+category",
            )
        )
    queries.extend(
        LabelledQuery(
            id=f"text-{colour}",
            text=f"something {colour}",
            relevant={pid: 1.0 for pid, (c, _) in info.items() if c == colour},
            kind="colour",
        )
        for colour in colours
    )
    photo_dir = base / "eval" / "photos"
    photo_dir.mkdir(parents=True, exist_ok=True)
    for category in sorted(by_kind):
        candidates = sorted(pid for pid in by_kind[category] if pid in images)
        for pid in rng.sample(candidates, min(photos_per_kind, len(candidates))):
            photo = photo_dir / f"{pid}.jpg"
            _phone_photo(str(images[pid]), rng).save(photo, format="JPEG", quality=85)
            colour = info[pid][0]
            queries.append(
                LabelledQuery(
                    id=f"photo-{pid}", image=str(photo), relevant={pid: 1.0}, kind="photo"
                )
            )
            others = [c for c in colours if c != colour and (c, category) in by_pair]
            if others:
                wanted = rng.choice(others)
                relevant = dict.fromkeys(by_pair[wanted, category], 2.0)
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
    try:
        demo = load_sample_queries(base)
    except (OSError, ValueError, TypeError):
        demo = []
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

    eval_dir = base / "eval"
    queries_path = write_queries(queries, eval_dir / "queries.jsonl")
    vocab = {
        "template": "a photo of a {label} product",
        "groups": {
            "color": colours + [c for c in _DISTRACTOR_COLOURS if c not in colours],
            "category": sorted({cat for _, cat in info.values()}),
        },
    }
    vocab_path = eval_dir / "tags.json"
    vocab_path.write_text(json.dumps(vocab, indent=2) + "\n", encoding="utf-8")
    gold_path = eval_dir / "gold_tags.json"
    gold = {pid: [c, cat] for pid, (c, cat) in sorted(info.items())}
    gold_path.write_text(json.dumps(gold, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return SampleEvaluation(
        queries=queries_path, vocabulary=vocab_path, gold_tags=gold_path, query_count=len(queries)
    )
