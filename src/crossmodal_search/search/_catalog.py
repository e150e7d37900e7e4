"""Catalog input: the :class:`Product` model and the JSON-lines catalog format.

(The Amazon Berkeley Objects loader and the sample catalog are in ``crossmodal_search.datasets``.)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossmodal_search._json import JSONInputError, parse_json_line
from crossmodal_search._types import MetadataValue
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search._schema import RESERVED_METADATA_KEYS

__all__ = ["Product", "load_products"]

logger = logging.getLogger(__name__)

#: Longest product id: keys are ``combined-{id}`` and S3 Vectors keys hold at most 1024 chars.
MAX_PRODUCT_ID_CHARS = 1000
#: Longest title: a title is filterable metadata, and S3 Vectors allows 2 KB of that per vector.
MAX_TITLE_CHARS = 500
#: Most extra photos a product may list (keys ``image{n}-{id}`` stay within S3 Vectors' 1024).
MAX_EXTRA_IMAGES = 49
#: Longest variant group: it is filterable metadata too (searches exclude groups by it).
MAX_VARIANT_GROUP_CHARS = 200


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
    """One catalog item: an id, its description, its photos, and filterable metadata.

    ``text`` may be empty when ``image`` is given, and ``image`` may be ``None`` when there is
    text; a product with neither is invalid. ``image`` is a local file path or an ``s3://`` URI.
    ``images`` are more photos of the product (the back, a detail, the product worn), each a
    path or URI like ``image`` and each embedded as its own image vector; ``image`` stays the
    main photo (the one the combined vector uses). ``images`` needs an ``image``, and may not
    repeat it or itself.
    ``metadata`` values are what S3 Vectors accepts (string, number, boolean or a list of those);
    the keys in :data:`RESERVED_METADATA_KEYS` belong to the searcher.

    Long media are optional and indexed per segment by
    :meth:`~crossmodal_search.search.CrossmodalSearcher.index_media`: ``video`` and ``audio``
    are ``s3://`` URIs (Nova reads them from S3); ``document`` is a local PDF (pages embedded as
    document images), a local UTF-8 text file, or the ``s3://`` URI of a plain-text document.

    ``product_id`` and ``text`` may be given positionally; the other fields are keywords. An
    invalid field raises :class:`~crossmodal_search.errors.InvalidInputError` (still a pydantic
    ``ValidationError`` too); ``Product.model_validate(data)`` raises pydantic's own.

    ``title`` is the product's name (an ABO ``item_name``); when it is given, the text that is
    embedded is the title then the description, and search results show it. Without one,
    results show the first line of ``text``.

    ``variant_group`` names the family a product belongs to (the same shirt in three colours
    shares one; an ABO ``model_name``, say): ``search(..., collapse="variant")`` then returns
    one hit per family, its best member, with the other members that matched.

    Example:
        >>> p = Product("B01", "A light cotton dress.", title="Red summer dress")
        >>> p.display_title, p.embedding_text
        ('Red summer dress', 'Red summer dress\nA light cotton dress.')
        >>> Product("B02", "Blue mug\n15 oz").display_title
        'Blue mug'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: str = Field(min_length=1, max_length=MAX_PRODUCT_ID_CHARS)
    text: str = ""
    title: str | None = Field(default=None, max_length=MAX_TITLE_CHARS)
    image: str | None = None
    images: tuple[str, ...] = Field(default=(), max_length=MAX_EXTRA_IMAGES)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    video: str | None = None
    audio: str | None = None
    document: str | None = None
    variant_group: str | None = Field(default=None, max_length=MAX_VARIANT_GROUP_CHARS)

    def __init__(
        self,
        product_id: str,
        text: str = "",
        *,
        title: str | None = None,
        image: str | os.PathLike[str] | None = None,
        images: Sequence[str | os.PathLike[str]] | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        video: str | None = None,
        audio: str | None = None,
        document: str | os.PathLike[str] | None = None,
        variant_group: str | None = None,
        **extra: object,
    ) -> None:
        """``Product("p1", "red dress")``: the id and text may be positional.

        Raises:
            InvalidInputError: A field is invalid (the error is also a pydantic
                ``ValidationError``, with ``errors()``); the message is one line.
        """
        data: dict[str, object] = {"product_id": product_id, "text": text, **extra}
        optional = {
            "title": title,
            "image": image,
            "video": video,
            "audio": audio,
            "document": document,
            "variant_group": variant_group,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        if metadata is not None:
            data["metadata"] = metadata
        if images is not None:
            data["images"] = images
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

    @field_validator("variant_group")
    @classmethod
    def _group_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("variant_group must not be blank (leave it out for no group)")
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("variant_group must not contain control characters")
        return value

    @field_validator("title", mode="before")
    @classmethod
    def _title_stripped(cls, value: object) -> object:
        if isinstance(value, str):
            value = " ".join(value.split())  # one line: it is shown and stored as metadata
            return value or None
        return value

    @field_validator("image", mode="before")
    @classmethod
    def _image_to_str(cls, value: object) -> object:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("images", mode="before")
    @classmethod
    def _images_to_str(cls, value: object) -> object:
        if isinstance(value, str | bytes | os.PathLike) or not isinstance(value, Iterable):
            raise ValueError("must be a list of image paths or s3:// URIs")
        items = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        for i, item in enumerate(items):
            if isinstance(item, str) and not item.strip():
                raise ValueError(f"images[{i}] is blank")
        return tuple(items)

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
        if not self.text.strip() and self.title is None and self.image is None:
            raise ValueError(f"product {self.product_id!r} has neither text nor image")
        if self.images and self.image is None:
            raise ValueError("images are extra photos: give the main photo as image too")
        seen: set[str] = set()
        for i, extra in enumerate(self.images):
            if extra == self.image:
                raise ValueError(f"images[{i}] repeats the main image {extra!r}")
            if extra in seen:
                raise ValueError(f"images[{i}] {extra!r} appears twice")
            seen.add(extra)
        return self

    @property
    def all_images(self) -> tuple[str, ...]:
        """Every photo of the product, the main one first (empty without an image)."""
        return () if self.image is None else (self.image, *self.images)

    @property
    def display_title(self) -> str:
        """``title``, or the first line of ``text`` (the item name for ABO listings)."""
        if self.title is not None:
            return self.title
        return self.text.strip().split("\n", 1)[0]

    @property
    def embedding_text(self) -> str:
        """What the text vector embeds: the title then the text, or the text alone."""
        if self.title is None:
            return self.text
        return f"{self.title}\n{self.text}" if self.text.strip() else self.title


def _resolved(value: object, base: Path) -> object:
    """A relative local path resolved against ``base``; anything else as is."""
    relative = isinstance(value, str) and value and not Path(value).is_absolute()
    if relative and not str(value).startswith("s3://"):
        return str(base / str(value))
    return value


def load_products(path: str | os.PathLike[str], *, limit: int | None = None) -> list[Product]:
    """Read products from a JSON-lines file: one ``Product`` object per line.

    Relative ``image``, ``images`` and ``document`` paths are resolved against the file's
    directory.

    Raises:
        InvalidInputError: a line is not valid JSON or not a valid product (names the line), or
            two lines share a ``product_id``.

    Example:
        A line: ``{"product_id": "p1", "text": "Blue mug", "image": "img/p1.jpg",
        "metadata": {"color": "blue"}}``; with more photos: ``"images": ["img/p1-back.jpg"]``
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
            if name in data:
                data[name] = _resolved(data[name], base)
        if isinstance(data.get("images"), list):
            data["images"] = [_resolved(v, base) for v in data["images"]]
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
