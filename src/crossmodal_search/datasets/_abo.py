"""The Amazon Berkeley Objects catalog format: listings and images into :class:`Product` s.

ABO is a public product dataset (Amazon.com, CC BY 4.0) and the layout the AWS sample notebook
reads: ``listings/metadata/listings_*.json.gz`` (gzipped JSON lines, one listing each, most text
fields lists of ``{language_tag, value}``) and ``images/metadata/images.csv.gz``
(``image_id,height,width,path``).
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import get_args

from pydantic import BaseModel, ConfigDict

from crossmodal_search._constants import VariantSource as VariantSource
from crossmodal_search._json import JSONInputError, parse_json_line
from crossmodal_search._types import MetadataValue, Scalar
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search import Product

__all__ = ["AboCatalog", "VariantSource", "load_abo"]

logger = logging.getLogger(__name__)

_MAX_BULLETS_CHARS = 1500

_VARIANT_SOURCES: tuple[str, ...] = get_args(VariantSource)
#: Longest group kept (``Product.variant_group`` takes 200 characters): longer ones are cut.
_MAX_GROUP_CHARS = 200


class AboCatalog(BaseModel):
    """What :func:`load_abo` read: the products, and counts of what it left out and why.

    Attributes:
        products: Products in file order (shards sorted by name), first occurrence of each id.
        skipped_no_content: Listings with neither a name/bullet text nor a usable image.
        duplicates: Listings whose ``item_id`` was already read from an earlier line or shard.
        missing_images: Listings whose main image is absent from ``images.csv.gz`` or from disk
            (the product is kept, text only, when it has text).
        malformed: Lines that are not JSON objects with an ``item_id``.
    """

    model_config = ConfigDict(frozen=True)

    products: list[Product]
    skipped_no_content: int = 0
    duplicates: int = 0
    missing_images: int = 0
    malformed: int = 0


def _pick_language(entries: object) -> list[tuple[str, str | None]]:
    """(value, language_tag) pairs of one ABO field, in the language we prefer.

    English wins (``en_US`` first, then any other ``en_*``), otherwise the first language seen.
    """
    if not isinstance(entries, list):
        return []
    items: list[tuple[str, str | None]] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            value = entry.get("value")
            tag = entry.get("language_tag")
            if isinstance(value, str) and value.strip():
                items.append((value.strip(), tag if isinstance(tag, str) else None))
    if not items:
        return []

    def rank(tag: str | None) -> int:
        if tag == "en_US":
            return 0
        if tag is not None and (tag == "en" or tag.startswith("en_")):
            return 1
        return 2

    best = min(rank(tag) for _, tag in items)
    if best < 2:
        return [(v, t) for v, t in items if rank(t) == best]
    first_tag = items[0][1]
    return [(v, t) for v, t in items if t == first_tag]


def _plain_values(entries: object) -> list[str]:
    """Language-independent ``value`` strings (``product_type``, ``model_number``)."""
    if not isinstance(entries, list):
        return []
    return [
        e["value"].strip()
        for e in entries
        if isinstance(e, Mapping) and isinstance(e.get("value"), str) and e["value"].strip()
    ]


def _colors(entries: object) -> list[str]:
    """Standardised colour names, lower-cased and de-duplicated (filter with ``$eq``/``$in``)."""
    colors: list[str] = []
    if not isinstance(entries, list):
        return colors
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        for value in entry.get("standardized_values") or ():
            if isinstance(value, str) and value.strip():
                name = value.strip().lower()
                if name not in colors:
                    colors.append(name)
    return colors


def _read_image_paths(root: Path) -> dict[str, str]:
    csv_path = root / "images" / "metadata" / "images.csv.gz"
    if not csv_path.is_file():
        logger.warning("no %s: products are loaded without images", csv_path)
        return {}
    with gzip.open(csv_path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"image_id", "path"} <= set(reader.fieldnames):
            raise InvalidInputError(f"{csv_path}: expected a header with image_id and path")
        return {row["image_id"]: row["path"] for row in reader if row.get("image_id")}


#: Longest catalog line accepted (a product with a 50,000-character text is ~200 KB of JSON).
def _iter_listings(paths: Iterable[Path]) -> Iterator[tuple[Path, int, object]]:
    for path in paths:
        try:
            with gzip.open(path, "rb") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        yield path, lineno, parse_json_line(line)
                    except JSONInputError as exc:
                        logger.debug("%s:%d: %s", path.name, lineno, exc)
                        yield path, lineno, None
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{path}: cannot read gzipped JSON lines ({exc})") from exc


def _join_image(image_root: str | Path, rel: str) -> str:
    if isinstance(image_root, str) and image_root.startswith("s3://"):
        return image_root.rstrip("/") + "/" + rel.lstrip("/")
    return str(Path(image_root) / rel)


def load_abo(
    root: str | os.PathLike[str],
    *,
    limit: int | None = None,
    image_root: str | os.PathLike[str] | None = None,
    max_images: int = 8,
    variants_from: VariantSource | None = None,
) -> AboCatalog:
    """Load an Amazon Berkeley Objects catalog (or a sample in the same layout).

    Reads ``listings/metadata/listings_*.json.gz`` (sorted) and ``images/metadata/images.csv.gz``.
    Each product gets the English item name as its ``title`` when there is one (``en_US``
    first, then other ``en_*``, else the listing's first language), the bullet points in the
    same preference order as its ``text``; metadata ``brand``, ``product_type``, ``color``
    (standardised colour names, lower case), ``language`` (tag of the chosen name) and
    ``country`` when present; and the main image under ``image_root`` (default
    ``ROOT/images/small``; may be an ``s3://`` prefix such as
    ``s3://amazon-berkeley-objects/images/small/``, which is not checked), with the listing's
    other images (``other_image_id``, in listing order, those found) as ``images``, up to
    ``max_images`` photos in all.

    Args:
        root: The dataset directory (contains ``listings/`` and ``images/``).
        limit: Stop after this many products.
        image_root: Where the ``images.csv.gz`` paths are resolved.
        max_images: Photos kept per product, the main one included (default 8, the
            searcher's ``max_images_per_product``; 1: the main image only); further
            ``other_image_id`` images are left out.
        variants_from: Fill :attr:`Product.variant_group` from this listing field, prefixed
            by the brand (``Pacer/Trail Runner``): listings sharing it are variants of one
            product (``search(..., collapse="variant")``). None (default): no groups.

    A local ``image_root`` must be an existing directory; when none of the referenced images
    is found there, a warning is logged (every product would be indexed text-only).

    Raises:
        InvalidInputError: ``root`` has no listings, a file is not readable, a local
            ``image_root`` does not exist, or ``variants_from`` is not a known field.

    Example:
        >>> catalog = load_abo("abo", limit=100)  # doctest: +SKIP
        >>> catalog.products[0].metadata["brand"]  # doctest: +SKIP
    """
    _check_options(limit, max_images, variants_from)
    base = Path(root).expanduser().resolve()
    shards = sorted((base / "listings" / "metadata").glob("listings_*.json.gz"))
    if not shards:
        raise InvalidInputError(
            f"{base}: no listings/metadata/listings_*.json.gz (not an ABO catalog directory)"
        )
    reader = _Reader(_images_base(base, image_root), _read_image_paths(base), variants_from)
    reader.max_extra = max_images - 1
    for path, lineno, listing in _iter_listings(shards):
        if limit is not None and len(reader.products) >= limit:
            break
        reader.add(listing, f"{path.name}:{lineno}")
    logger.info(
        "loaded %d products from %s (%d without content, %d duplicates, %d missing images)",
        len(reader.products),
        base,
        reader.skipped,
        reader.duplicates,
        reader.missing,
    )
    if reader.missing and not reader.found:
        logger.warning(
            "none of the %d images were found under %s: every product will be indexed "
            "text-only (wrong image root? CLI: --image-root)",
            reader.missing,
            reader.images_base,
        )
    return AboCatalog(
        products=reader.products,
        skipped_no_content=reader.skipped,
        duplicates=reader.duplicates,
        missing_images=reader.missing,
        malformed=reader.malformed,
    )


def _check_options(limit: int | None, max_images: int, variants_from: VariantSource | None) -> None:
    """``load_abo``'s options, checked before anything is read."""
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit must be >= 0, got {limit}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise InvalidInputError(f"max_images must be an int >= 1, got {max_images!r}")
    if variants_from is not None and variants_from not in _VARIANT_SOURCES:
        raise InvalidInputError(
            f"variants_from must be one of {', '.join(_VARIANT_SOURCES)}; got {variants_from!r}"
        )


def _images_base(base: Path, image_root: str | os.PathLike[str] | None) -> str | Path:
    """Where image paths resolve: ``ROOT/images/small``, an ``s3://`` prefix, or a local
    directory that must exist (a mistyped one would index every product text-only)."""
    if image_root is None:
        return base / "images" / "small"
    if isinstance(image_root, str) and image_root.startswith("s3://"):
        return image_root
    local = Path(image_root).expanduser().resolve()
    if not local.exists():
        raise InvalidInputError(f"image root not found: {local}")
    if not local.is_dir():
        raise InvalidInputError(f"image root is not a directory: {local}")
    return local


class _Reader:
    """Listings into products, counting what is left out and why."""

    def __init__(
        self,
        images_base: str | Path,
        image_paths: Mapping[str, str],
        variants_from: VariantSource | None = None,
    ) -> None:
        self.images_base = images_base
        self._variants_from = variants_from
        self._image_paths = image_paths
        self.products: list[Product] = []
        self._seen: set[str] = set()
        self.skipped = self.duplicates = self.missing = self.malformed = self.found = 0
        self.max_extra = 7

    def add(self, listing: object, where: str) -> None:
        item_id = listing.get("item_id") if isinstance(listing, dict) else None
        if not isinstance(listing, dict) or not isinstance(item_id, str) or not item_id.strip():
            logger.debug("%s: not a listing with an item_id", where)
            self.malformed += 1
            return
        item_id = item_id.strip()
        if item_id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(item_id)
        names = _pick_language(listing.get("item_name"))
        title = names[0][0] if names else None
        text = _text(_pick_language(listing.get("bullet_point")))
        image = self._image(listing.get("main_image_id"))
        if not text and title is None and image is None:
            self.skipped += 1
            return
        try:
            metadata = _metadata(listing, names)
            product = Product(
                item_id,
                text,
                title=title,
                image=image,
                images=self._others(listing.get("other_image_id"), image),
                metadata=metadata,
                variant_group=self._group(listing),
            )
        except InvalidInputError as exc:
            logger.debug("%s: %s", where, exc)
            self.malformed += 1
            return
        self.products.append(product)

    def _others(self, image_ids: object, main: str | None) -> list[str]:
        """The listing's other images that exist, without repeats, up to the cap (none
        without a main image)."""
        found: list[str] = []
        if main is None or not isinstance(image_ids, list):
            return found
        for image_id in image_ids:
            if len(found) >= self.max_extra:
                break
            rel = self._image_paths.get(image_id) if isinstance(image_id, str) else None
            path = None if rel is None else _join_image(self.images_base, rel)
            local = isinstance(self.images_base, Path)
            if (
                path is None
                or path == main
                or path in found
                or (local and not Path(path).is_file())
            ):
                continue
            found.append(path)
        return found

    def _group(self, listing: Mapping[str, object]) -> str | None:
        """The listing's variant group: brand and the ``variants_from`` field, if it has one."""
        if self._variants_from is None:
            return None
        entries = listing.get(self._variants_from)
        values = _pick_language(entries) if self._variants_from == "model_name" else None
        value = values[0][0] if values else next(iter(_plain_values(entries)), None)
        if value is None:
            return None
        brand = _pick_language(listing.get("brand"))
        group = f"{brand[0][0]}/{value}" if brand else value
        return " ".join(group.split())[:_MAX_GROUP_CHARS].strip()

    def _image(self, image_id: object) -> str | None:
        """The main image's path or URI, or None (counted missing when it cannot be found)."""
        if not isinstance(image_id, str) or not image_id:
            return None
        rel = self._image_paths.get(image_id)
        if rel is None:
            self.missing += 1
            return None
        candidate = _join_image(self.images_base, rel)
        if isinstance(self.images_base, Path) and not Path(candidate).is_file():
            self.missing += 1
            return None
        self.found += 1
        return candidate


def _text(bullets: list[tuple[str, str | None]]) -> str:
    """The bullet points, one per line, up to :data:`_MAX_BULLETS_CHARS`."""
    lines: list[str] = []
    bullet_chars = 0
    for value, _ in bullets:
        if bullet_chars + len(value) > _MAX_BULLETS_CHARS:
            if bullet_chars == 0:  # one huge bullet: keep its beginning
                lines.append(value[: _MAX_BULLETS_CHARS - 1].rstrip() + "…")
            break
        lines.append(value)
        bullet_chars += len(value)
    return "\n".join(lines)


def _metadata(
    listing: Mapping[str, object], names: list[tuple[str, str | None]]
) -> dict[str, MetadataValue]:
    """Brand, model number, product type, standardised colours, language and country, when
    present."""
    metadata: dict[str, MetadataValue] = {}
    brand = _pick_language(listing.get("brand"))
    if brand:
        metadata["brand"] = brand[0][0]
    model_number = _plain_values(listing.get("model_number"))
    if model_number:
        metadata["model_number"] = model_number[0]
    product_type = _plain_values(listing.get("product_type"))
    if product_type:
        metadata["product_type"] = product_type[0]
    colors = _colors(listing.get("color"))
    if colors:
        color_values: list[Scalar] = list(colors)
        metadata["color"] = color_values
    if names and names[0][1]:
        metadata["language"] = str(names[0][1])
    country = listing.get("country")
    if isinstance(country, str) and country:
        metadata["country"] = country
    return metadata
