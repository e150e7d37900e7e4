"""Labelled query sets: the model, the JSON-lines file format, and a builder from a catalog.

File format (one JSON object per line, blank lines ignored)::

    {"id": "q1", "text": "red running shoe", "relevant": ["B01", "B07"]}
    {"id": "q2", "image": "images/shoe.jpg", "relevant": {"B01": 3, "B07": 1}}
    {"id": "q3", "text": "in blue", "image": "images/shoe.jpg", "relevant": {"B02": 1}}

``text`` and ``image`` are both optional but at least one is required; ``image`` is a local
path (relative paths are resolved against the query file's directory) or an ``s3://`` URI.
``relevant`` is a list of product ids (grade 1 each) or ``{product_id: grade}`` with grades
``>= 0`` (``0`` = judged not relevant). ``kind`` is a free label used to break results down
(the catalog builder writes ``own-image``, ``title`` and ``held-out-image``).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import random
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation._metrics import normalize_relevance

if TYPE_CHECKING:
    from crossmodal_search.search import Product

__all__ = [
    "LabelledQuery",
    "QueryType",
    "build_queries_from_catalog",
    "hold_out",
    "read_abo_other_images",
    "read_queries",
    "write_queries",
]

logger = logging.getLogger(__name__)

QueryType: TypeAlias = Literal["text", "image", "text+image"]


class LabelledQuery(BaseModel):
    """One query with its relevance judgements.

    Attributes:
        id: Unique within the query set.
        text: Query text, if any.
        image: Query image (local path or ``s3://`` URI), if any.
        relevant: ``{product_id: grade}``; a list in the input means grade 1 for each id.
        kind: Optional free label (e.g. ``"own-image"``) reported as its own breakdown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    text: str | None = None
    image: str | None = None
    relevant: dict[str, float] = Field(default_factory=dict)
    kind: str | None = None

    @field_validator("text", "image")
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @field_validator("relevant", mode="before")
    @classmethod
    def _grades(cls, value: Any) -> dict[str, float]:
        if isinstance(value, Mapping) or (
            isinstance(value, Sequence) and not isinstance(value, str | bytes)
        ):
            try:
                return normalize_relevance(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(str(exc)) from None
        raise ValueError("must be a list of product ids or an object {product_id: grade}")

    @model_validator(mode="after")
    def _needs_input(self) -> LabelledQuery:
        if self.text is None and self.image is None:
            raise ValueError("a query needs 'text', 'image' or both")
        return self

    @property
    def query_type(self) -> QueryType:
        """``"text"``, ``"image"`` or ``"text+image"``: what the query is made of."""
        if self.text is not None and self.image is not None:
            return "text+image"
        return "text" if self.text is not None else "image"


def _is_remote(image: str) -> bool:
    return image.startswith("s3://")


def _error_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def read_queries(path: str | os.PathLike[str]) -> list[LabelledQuery]:
    """Read a JSON-lines query file.

    Relative image paths are resolved against the file's directory.

    Raises:
        InvalidInputError: the file is missing, or a line is not valid JSON, does not match
            the query model, or repeats an id; the message names the file and line.
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidInputError(f"query file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read query file {file}: {exc}") from exc
    queries: list[LabelledQuery] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}, line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: invalid JSON: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        try:
            query = LabelledQuery.model_validate(raw)
        except ValidationError as exc:
            raise InvalidInputError(f"{where}: {_error_text(exc)}") from None
        if query.id in first_line:
            raise InvalidInputError(
                f"{where}: duplicate query id {query.id!r} (first on line {first_line[query.id]})"
            )
        first_line[query.id] = number
        if query.image is not None and not _is_remote(query.image):
            image = Path(query.image)
            if not image.is_absolute():
                resolved = os.path.normpath(file.parent / image)
                query = query.model_copy(update={"image": resolved})
        queries.append(query)
    logger.debug("read %d queries from %s", len(queries), file)
    return queries


def write_queries(queries: Iterable[LabelledQuery], path: str | os.PathLike[str]) -> Path:
    """Write queries as JSON lines (atomically: a crash leaves the old file intact).

    Image paths under the file's directory or its parent are written relative to the file
    (``img/a.jpg``, ``../queries/b.jpg``), so a catalog with its query file can be moved
    as a whole; other paths are written absolute.

    Raises:
        InvalidInputError: two queries share an id.
    """
    file = Path(path)
    base = file.parent.resolve()
    seen: set[str] = set()
    out: list[str] = []
    for query in queries:
        if query.id in seen:
            raise InvalidInputError(f"duplicate query id {query.id!r}")
        seen.add(query.id)
        data = query.model_dump(exclude_none=True)
        if query.image is not None and not _is_remote(query.image):
            image = Path(query.image).resolve()
            if image.is_relative_to(base.parent) and base.parent != base:
                data["image"] = Path(os.path.relpath(image, base)).as_posix()
            else:
                data["image"] = str(image)
        out.append(json.dumps(data, ensure_ascii=False))
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in out))
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def read_abo_other_images(
    root: str | os.PathLike[str], *, image_root: str | os.PathLike[str] | None = None
) -> dict[str, list[str]]:
    """Map each ABO ``item_id`` to the paths of its ``other_image_id`` images.

    These are the product's extra photos, which :func:`~crossmodal_search.search.load_abo`
    does not index (it indexes the main image): ideal held-out image queries. Images absent
    from ``images.csv.gz`` or from disk are left out.

    Args:
        root: The ABO dataset directory (``listings/`` and ``images/``).
        image_root: Where image paths are resolved (default ``ROOT/images/small``).
    """
    base = Path(root).expanduser()
    images_base = Path(image_root) if image_root is not None else base / "images" / "small"
    csv_path = base / "images" / "metadata" / "images.csv.gz"
    if not csv_path.is_file():
        return {}
    with gzip.open(csv_path, "rt", encoding="utf-8", newline="") as fh:
        paths = {row["image_id"]: row["path"] for row in csv.DictReader(fh) if row.get("image_id")}
    found: dict[str, list[str]] = {}
    for shard in sorted((base / "listings" / "metadata").glob("listings_*.json.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as fh:
            for line in fh:
                try:
                    listing = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(listing, dict) or not isinstance(listing.get("item_id"), str):
                    continue
                others = listing.get("other_image_id")
                if not isinstance(others, list):
                    continue
                item = listing["item_id"].strip()
                for image_id in others:
                    rel = paths.get(image_id) if isinstance(image_id, str) else None
                    if rel is None or not (images_base / rel).is_file():
                        continue
                    found.setdefault(item, [])
                    if str(images_base / rel) not in found[item]:
                        found[item].append(str(images_base / rel))
    return found


def build_queries_from_catalog(
    products: Iterable[Product],
    *,
    seed: int = 0,
    own_image: bool = True,
    title: bool = True,
    held_out_images: bool = True,
    other_images: Mapping[str, Sequence[str]] | None = None,
    max_queries: int | None = None,
) -> list[LabelledQuery]:
    """Build a labelled query set from a catalog that has none.

    For each product: its main image as an image query (``kind="own-image"``; a sanity
    baseline, the indexed image retrieves itself), its title as a text query
    (``kind="title"``, crossmodal when run against image vectors), and, where the product
    has more images (``other_images``, e.g. from :func:`read_abo_other_images`, else its own
    ``images``), one of them chosen with ``seed`` as an image query
    (``kind="held-out-image"``: a photo the index never saw, the realistic shopper case: index
    the catalog through :func:`hold_out`, CLI ``crossmodal index --hold-out``, so that it
    does not). Each query's only relevant product is the product itself (grade 1).

    Args:
        products: The catalog.
        seed: Makes held-out image choice and ``max_queries`` sampling reproducible.
        own_image: Include own-image queries.
        title: Include title queries.
        held_out_images: Include held-out image queries.
        other_images: ``{product_id: [image, ...]}``, extra images per product (default:
            each product's ``images``).
        max_queries: Keep a seeded random sample of at most this many queries.

    Raises:
        InvalidInputError: ``max_queries`` is below 1.
    """
    if max_queries is not None and max_queries < 1:
        raise InvalidInputError(f"max_queries must be >= 1, got {max_queries}")
    rng = random.Random(seed)
    queries: list[LabelledQuery] = []
    for product in products:
        pid = product.product_id
        if own_image and product.image:
            queries.append(
                LabelledQuery(
                    id=f"{pid}:image", image=product.image, relevant={pid: 1.0}, kind="own-image"
                )
            )
        name = product.display_title.strip() if title else ""
        if name:
            queries.append(
                LabelledQuery(id=f"{pid}:title", text=name, relevant={pid: 1.0}, kind="title")
            )
        listed = (other_images or {}).get(pid) or product.images
        others = [img for img in listed if img != product.image]
        if held_out_images and others:
            queries.append(
                LabelledQuery(
                    id=f"{pid}:held-out",
                    image=rng.choice(others),
                    relevant={pid: 1.0},
                    kind="held-out-image",
                )
            )
    if max_queries is not None and len(queries) > max_queries:
        keep = set(rng.sample(range(len(queries)), max_queries))
        queries = [q for i, q in enumerate(queries) if i in keep]
    logger.info("built %d queries from the catalog", len(queries))
    return queries


def hold_out(products: Iterable[Product], queries: Iterable[LabelledQuery]) -> list[Product]:
    """The products without the extra photos (``images``) that ``queries`` search with.

    A held-out photo query is only honest when the index never saw the photo: index this
    catalog, not the one the queries were built from. Main images stay (an ``own-image``
    query searches with the indexed photo on purpose, as a baseline). Paths are compared
    resolved.

    Example:
        >>> searcher.index(hold_out(catalog.products, queries))  # doctest: +SKIP
    """
    used = {_same_file(q.image) for q in queries if q.image}
    kept: list[Product] = []
    for product in products:
        images = tuple(i for i in product.images if _same_file(i) not in used)
        changed = len(images) != len(product.images)
        kept.append(product.model_copy(update={"images": images}) if changed else product)
    return kept


def _same_file(image: str) -> str:
    return image if _is_remote(image) else os.path.realpath(image)
