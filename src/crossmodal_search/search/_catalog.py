"""Catalog input: the :class:`Product` model and loaders (Amazon Berkeley Objects, JSON lines)."""

from __future__ import annotations

import csv
import gzip
import logging
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossmodal_search._json import JSONInputError, loads_strict
from crossmodal_search._types import MetadataValue, Scalar
from crossmodal_search.errors import InvalidInputError

__all__ = [
    "RESERVED_METADATA_KEYS",
    "AboCatalog",
    "Product",
    "load_abo",
    "load_products",
]

logger = logging.getLogger(__name__)

#: Metadata keys the searcher writes on its vectors (product vectors and the segment vectors of
#: videos, audio and documents); a product's own metadata may not use them.
RESERVED_METADATA_KEYS: frozenset[str] = frozenset(
    {
        "type",
        "product_id",
        "text",
        "image_path",
        "content_hash",
        "metadata_hash",
        "embedding_model",
        "embedding_type",
        "source_uri",
        "segment_index",
        "segment_start",
        "segment_end",
        "segment_unit",
        "segment_count",
        "segment_config",
    }
)

#: Longest product id: keys are ``combined-{id}`` and S3 Vectors keys hold at most 1024 chars.
MAX_PRODUCT_ID_CHARS = 1000

_MAX_BULLETS_CHARS = 1500


class ProductValidationError(InvalidInputError, ValidationError):
    """An invalid :class:`Product`: one line naming each bad field; pydantic's ``errors()``.

    Both an ``InvalidInputError`` (a ``ValueError``) and a pydantic ``ValidationError``, so code
    catching either keeps working.
    """

    def __str__(self) -> str:
        parts: list[str] = []
        for err in self.errors():
            loc = err["loc"]
            if len(loc) >= 2 and loc[0] == "metadata":
                # One line per bad value, not one per member of the metadata value union.
                line = f"metadata[{loc[1]!r}]: must be a string, number, boolean or a list of those"
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                where = ".".join(str(p) for p in loc)
                line = f"{where}: {msg}" if where else msg
            if line not in parts:
                parts.append(line)
        return "invalid product: " + "; ".join(parts)


class Product(BaseModel):
    """One catalog item: an id, its description, its main image, and filterable metadata.

    ``text`` may be empty when ``image`` is given, and ``image`` may be ``None`` when there is
    text; a product with neither is invalid. ``image`` is a local file path or an ``s3://`` URI.
    ``metadata`` values are what S3 Vectors accepts (string, number, boolean or a list of those);
    the keys in :data:`RESERVED_METADATA_KEYS` belong to the searcher.

    Long media are optional and indexed per segment by
    :meth:`~crossmodal_search.search.CrossmodalSearcher.index_media`: ``video`` and ``audio``
    are ``s3://`` URIs (Nova reads them from S3); ``document`` is a local PDF (pages embedded as
    document images), a local UTF-8 text file, or the ``s3://`` URI of a plain-text document.

    ``product_id`` and ``text`` may be given positionally; the other fields are keywords. An
    invalid field raises :class:`~crossmodal_search.errors.InvalidInputError` (still a pydantic
    ``ValidationError`` too); ``Product.model_validate(data)`` raises pydantic's own.

    Example:
        >>> p = Product("B01", "Red summer dress", metadata={"color": "red"})
        >>> p.title
        'Red summer dress'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: str = Field(min_length=1, max_length=MAX_PRODUCT_ID_CHARS)
    text: str = ""
    image: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    video: str | None = None
    audio: str | None = None
    document: str | None = None

    def __init__(
        self,
        product_id: str,
        text: str = "",
        *,
        image: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        video: str | None = None,
        audio: str | None = None,
        document: str | os.PathLike[str] | None = None,
        **extra: object,
    ) -> None:
        """``Product("p1", "red dress")``: the id and text may be positional.

        Raises:
            InvalidInputError: A field is invalid (the error is also a pydantic
                ``ValidationError``, with ``errors()``); the message is one line.
        """
        data: dict[str, object] = {"product_id": product_id, "text": text, **extra}
        optional = {"image": image, "video": video, "audio": audio, "document": document}
        data.update({k: v for k, v in optional.items() if v is not None})
        if metadata is not None:
            data["metadata"] = metadata
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ProductValidationError.from_exception_data(
                exc.title,
                exc.errors(),  # type: ignore[arg-type]
            ) from exc

    @field_validator("product_id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("product_id must not be blank")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("product_id must not contain control characters (NUL, newline, ...)")
        return value

    @field_validator("image", mode="before")
    @classmethod
    def _image_to_str(cls, value: object) -> object:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("video", "audio", mode="before")
    @classmethod
    def _media_in_s3(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith("s3://"):
            raise ValueError(f"must be an s3:// URI (Nova reads long media from S3), got {value!r}")
        return value

    @field_validator("document", mode="before")
    @classmethod
    def _document_to_str(cls, value: object) -> object:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        reserved = sorted(RESERVED_METADATA_KEYS.intersection(value))
        if reserved:
            raise ValueError(f"metadata keys {reserved} are reserved for the searcher")
        for key, item in value.items():
            members = item if isinstance(item, list) else [item]
            if any(isinstance(m, float) and not math.isfinite(m) for m in members):
                raise ValueError(
                    f"key {key!r} holds NaN or infinity, which JSON and S3 Vectors cannot store"
                )
        return value

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Product:
        """Validate a mapping (``{"product_id": ..., "text": ..., ...}``) into a Product.

        Raises:
            InvalidInputError: The mapping is not a valid product (also a pydantic
                ``ValidationError``), a missing ``product_id`` included.
        """
        if isinstance(obj, Mapping) and "product_id" not in obj:
            raise ProductValidationError.from_exception_data(
                cls.__name__, [{"type": "missing", "loc": ("product_id",), "input": dict(obj)}]
            )
        if isinstance(obj, Mapping):
            try:
                return cls(**obj)
            except TypeError as exc:  # a key our __init__ takes positionally, given twice
                raise InvalidInputError(f"invalid product: {exc}") from exc
        return super().model_validate(obj, **kwargs)

    @model_validator(mode="after")
    def _has_content(self) -> Product:
        if not self.text.strip() and self.image is None:
            raise ValueError(f"product {self.product_id!r} has neither text nor image")
        return self

    @property
    def title(self) -> str:
        """The first line of ``text`` (the item name for ABO listings)."""
        return self.text.strip().split("\n", 1)[0]


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
MAX_LINE_BYTES = 4 * 1024 * 1024


def parse_json_line(raw: bytes) -> object:
    """One JSON-lines record: strict UTF-8, at most :data:`MAX_LINE_BYTES`, no NaN/Infinity,
    no integer beyond 20 digits, no absurd nesting (``crossmodal_search._json``).

    Raises:
        JSONInputError: Why the line cannot be read (the caller adds file and line).
    """
    return loads_strict(raw, max_bytes=MAX_LINE_BYTES)


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
) -> AboCatalog:
    """Load an Amazon Berkeley Objects catalog (or a sample in the same layout).

    Reads ``listings/metadata/listings_*.json.gz`` (sorted) and ``images/metadata/images.csv.gz``.
    Each product gets the English item name when there is one (``en_US`` first, then other
    ``en_*``, else the listing's first language) followed by bullet points in the same
    preference order as ``text``; metadata ``brand``, ``product_type``, ``color`` (standardised
    colour names, lower case), ``language`` (tag of the chosen name) and ``country`` when present;
    and the main image under ``image_root`` (default ``ROOT/images/small``; may be an ``s3://``
    prefix such as ``s3://amazon-berkeley-objects/images/small/``, which is not checked).

    Args:
        root: The dataset directory (contains ``listings/`` and ``images/``).
        limit: Stop after this many products.
        image_root: Where the ``images.csv.gz`` paths are resolved.

    A local ``image_root`` must be an existing directory; when none of the referenced images
    is found there, a warning is logged (every product would be indexed text-only).

    Raises:
        InvalidInputError: ``root`` has no listings, a file is not readable, or a local
            ``image_root`` does not exist.

    Example:
        >>> catalog = load_abo("abo", limit=100)  # doctest: +SKIP
        >>> catalog.products[0].metadata["brand"]  # doctest: +SKIP
    """
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit must be >= 0, got {limit}")
    base = Path(root).expanduser().resolve()
    shards = sorted((base / "listings" / "metadata").glob("listings_*.json.gz"))
    if not shards:
        raise InvalidInputError(
            f"{base}: no listings/metadata/listings_*.json.gz (not an ABO catalog directory)"
        )
    images_base: str | Path
    if image_root is None:
        images_base = base / "images" / "small"
    elif isinstance(image_root, str) and image_root.startswith("s3://"):
        images_base = image_root
    else:
        images_base = Path(image_root).expanduser().resolve()
        # A mistyped image root would otherwise index every product text-only, silently.
        if not images_base.exists():
            raise InvalidInputError(f"image root not found: {images_base}")
        if not images_base.is_dir():
            raise InvalidInputError(f"image root is not a directory: {images_base}")
    image_paths = _read_image_paths(base)

    products: list[Product] = []
    seen: set[str] = set()
    skipped = duplicates = missing = malformed = found = 0
    for path, lineno, listing in _iter_listings(shards):
        if limit is not None and len(products) >= limit:
            break
        item_id = listing.get("item_id") if isinstance(listing, dict) else None
        if not isinstance(listing, dict) or not isinstance(item_id, str) or not item_id.strip():
            logger.debug("%s:%d: not a listing with an item_id", path.name, lineno)
            malformed += 1
            continue
        item_id = item_id.strip()
        if item_id in seen:
            duplicates += 1
            continue
        seen.add(item_id)

        names = _pick_language(listing.get("item_name"))
        bullets = _pick_language(listing.get("bullet_point"))
        lines = [names[0][0]] if names else []
        bullet_chars = 0
        for value, _ in bullets:
            if bullet_chars + len(value) > _MAX_BULLETS_CHARS:
                if bullet_chars == 0:  # one huge bullet: keep its beginning
                    lines.append(value[: _MAX_BULLETS_CHARS - 1].rstrip() + "…")
                break
            lines.append(value)
            bullet_chars += len(value)
        text = "\n".join(lines)

        image: str | None = None
        main_image = listing.get("main_image_id")
        if isinstance(main_image, str) and main_image:
            rel = image_paths.get(main_image)
            if rel is None:
                missing += 1
            else:
                candidate = _join_image(images_base, rel)
                if isinstance(images_base, Path) and not Path(candidate).is_file():
                    missing += 1
                else:
                    image = candidate
                    found += 1
        if not text and image is None:
            skipped += 1
            continue

        metadata: dict[str, MetadataValue] = {}
        brand = _pick_language(listing.get("brand"))
        if brand:
            metadata["brand"] = brand[0][0]
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
        products.append(Product(product_id=item_id, text=text, image=image, metadata=metadata))

    logger.info(
        "loaded %d products from %s (%d without content, %d duplicates, %d missing images)",
        len(products),
        base,
        skipped,
        duplicates,
        missing,
    )
    if missing and not found:
        logger.warning(
            "none of the %d images were found under %s: every product will be indexed "
            "text-only (wrong image root? CLI: --image-root)",
            missing,
            images_base,
        )
    return AboCatalog(
        products=products,
        skipped_no_content=skipped,
        duplicates=duplicates,
        missing_images=missing,
        malformed=malformed,
    )


def load_products(path: str | os.PathLike[str], *, limit: int | None = None) -> list[Product]:
    """Read products from a JSON-lines file: one ``Product`` object per line.

    Relative ``image`` and ``document`` paths are resolved against the file's directory.

    Raises:
        InvalidInputError: a line is not valid JSON or not a valid product (names the line), or
            two lines share a ``product_id``.

    Example:
        A line: ``{"product_id": "p1", "text": "Blue mug", "image": "img/p1.jpg",
        "metadata": {"color": "blue"}}``
    """
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {file}: {exc.strerror or exc}") from exc
    base = file.resolve().parent
    products: list[Product] = []
    seen: set[str] = set()
    # A byte order mark, as some Windows editors write, is not part of the first line.
    for lineno, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        if limit is not None and len(products) >= limit:
            break
        if not line.strip():
            continue
        try:
            data = parse_json_line(line)
        except JSONInputError as exc:
            raise InvalidInputError(f"{file}:{lineno}: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"{file}:{lineno}: expected a JSON object (a product), got {type(data).__name__}"
            )
        for name in ("image", "document"):
            value = data.get(name)
            relative = isinstance(value, str) and value and not Path(value).is_absolute()
            if relative and not str(value).startswith("s3://"):
                data[name] = str(base / str(value))
        try:
            product = Product.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "product"
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise InvalidInputError(f"{file}:{lineno}: {where}: {msg}") from exc
        except InvalidInputError as exc:
            raise InvalidInputError(f"{file}:{lineno}: {exc}") from exc
        if product.product_id in seen:
            raise InvalidInputError(f"{file}:{lineno}: duplicate product_id {product.product_id!r}")
        seen.add(product.product_id)
        products.append(product)
    return products
