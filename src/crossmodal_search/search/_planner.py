"""The indexing plan: what each product needs, decided before any embedding call.

A product's ``content_hash`` is a SHA-256 of everything that determines its vectors (embedding
model, dimension, text, image bytes or ``s3://`` URI, combined-vector weight); its
``metadata_hash`` of what its metadata is built from. Comparing both with the stored vectors
(one ``store.get`` per window of products) gives each product one action:

* ``skip``: every vector exists with the same hashes (keys added by other tools, such as tags,
  do not count);
* ``rewrite``: the same embedding inputs, other metadata: the stored vectors are written again
  with the new metadata, without embedding calls;
* ``embed``: anything else: embedded again and overwritten;
* ``fail``: an unreadable image or metadata over the store's limits, found before any call.

A product's extra photos (``Product.images``) are planned one by one, each with its own
``content_hash`` (model, dimension, the photo): a photo already stored under any of the
product's extra-photo keys is never embedded again (only re-keyed when it moved in the list),
a new photo costs one call, and a photo no longer listed (or every extra photo, with
``main_image_only``) is stale. The stored ``image_count`` says which extra keys to read.

A product that lost its text or image has the stale vector listed for deletion. Tags written by
zero-shot tagging are carried over to a rewrite or a re-embed unless the product's own metadata
sets a tag key. :meth:`CrossmodalSearcher.index`, :meth:`~CrossmodalSearcher.estimate` and
:func:`index_with_batch` all consume these plans.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from crossmodal_search._types import MetadataValue, Vector
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search._catalog import MAX_EXTRA_IMAGES, Product
from crossmodal_search.search._results import CostEstimate, ItemFailure
from crossmodal_search.search._schema import (
    PRODUCT_TYPES,
    ProductVectorType,
    extra_image_key,
    extra_image_keys,
    is_tag_key,
    metadata_problem,
    product_key,
    variant_metadata,
)
from crossmodal_search.search._vectors import unit, weighted_mean
from crossmodal_search.stores import StoreLimits, VectorRecord

if TYPE_CHECKING:
    from crossmodal_search.stores import VectorStore

__all__ = [
    "EmbedPart",
    "ImagePlan",
    "Planner",
    "ProductPlan",
    "check_products",
    "estimate",
    "product_windows",
]

_HASH_VERSION = "crossmodal-content-v1"
_IMAGE_HASH_VERSION = "crossmodal-image-v1"

#: What an ``embed`` plan sends to the embedder: ``text``, ``image`` (the main photo) or
#: ``image{n}`` (extra photo ``n``).
EmbedPart: TypeAlias = str
Action: TypeAlias = Literal["skip", "rewrite", "embed", "fail"]
#: What one extra photo needs: nothing, new metadata, its stored vector under its key (it
#: moved in the list), or an embedding call.
ImageState: TypeAlias = Literal["skip", "rewrite", "reuse", "embed"]


@dataclass
class ImagePlan:
    """One extra photo of a product: photo ``number`` (2, 3, ...), key ``image{number}-{id}``.

    Its ``content_hash`` covers the model, the dimension and the photo's bytes (or URI) only:
    a new description or another photo of the product does not re-embed it.
    """

    number: int
    image: str
    image_input: bytes | str | None = None
    image_bytes: int = 0
    content_hash: str = ""
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    state: ImageState = "embed"
    stored: Vector | None = None  # the stored vector of the same photo (skip, rewrite, reuse)

    @property
    def part(self) -> EmbedPart:
        return f"image{self.number}"


@dataclass
class ProductPlan:
    """Everything decided about one product before any embedding call."""

    product: Product
    action: Action = "embed"
    content_hash: str = ""
    metadata_hash: str = ""
    # The image as the embedder gets it: its bytes, or its s3:// URI.
    image_input: bytes | str | None = None
    image_bytes: int = 0
    expected: tuple[ProductVectorType, ...] = ()
    metadata: dict[ProductVectorType, dict[str, MetadataValue]] = field(default_factory=dict)
    failure: ItemFailure | None = None
    stored: dict[str, VectorRecord] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    # What the text, image and combined vectors need (the extra photos decide for themselves).
    base: Action = "embed"
    extras: list[ImagePlan] = field(default_factory=list)

    @property
    def product_id(self) -> str:
        return self.product.product_id

    @property
    def parts(self) -> tuple[EmbedPart, ...]:
        """What embedding this product takes (nothing unless its action is ``embed``)."""
        if self.action != "embed":
            return ()
        wanted: list[EmbedPart] = []
        if self.base == "embed":
            if "text" in self.expected:
                wanted.append("text")
            if self.image_input is not None:
                wanted.append("image")
        wanted += [x.part for x in self.extras if x.state == "embed"]
        return tuple(wanted)

    def input_of(self, part: EmbedPart) -> str | bytes:
        """What the embedder gets for ``part``: the text, or a photo's bytes or URI."""
        if part == "text":
            return self.product.embedding_text
        found = self.image_input
        if part != "image":
            found = next(x.image_input for x in self.extras if x.part == part)
        assert found is not None
        return found

    def image_of(self, part: EmbedPart) -> str | None:
        """The photo (path or URI) behind an image ``part``."""
        if part == "image":
            return self.product.image
        return next((x.image for x in self.extras if x.part == part), None)

    def fail(self, kind: Literal["input", "metadata"], reason: str) -> None:
        self.action = "fail"
        self.failure = ItemFailure(product_id=self.product_id, kind=kind, reason=reason)

    def rewritten(self) -> list[VectorRecord]:
        """A ``rewrite``: the stored vectors with the new metadata."""
        return self.records({}, 0.5)

    def records(self, vectors: Mapping[EmbedPart, Vector], weight: float) -> list[VectorRecord]:
        """The records to write: embedded ``vectors`` (the combined one is the normalised
        ``weight``-ed mean of text and main image, or the one that exists), stored vectors
        under new metadata, and extra photos' vectors."""
        pid = self.product_id
        out: list[VectorRecord] = []
        if self.base == "embed":
            made: dict[ProductVectorType, Vector] = {
                t: unit(vectors[t]) for t in ("text", "image") if t in vectors
            }
            if "text" in made and "image" in made:
                made["combined"] = weighted_mean(made["text"], made["image"], weight)
            else:
                made["combined"] = made["text"] if "text" in made else made["image"]
            out += [
                VectorRecord(product_key(t, pid), made[t], self.metadata[t]) for t in self.expected
            ]
        elif self.base == "rewrite":
            out += [
                VectorRecord(product_key(t, pid), self.stored[product_key(t, pid)].vector, md)
                for t, md in self.metadata.items()
            ]
        for x in self.extras:
            if x.state == "skip":
                continue
            vector = unit(vectors[x.part]) if x.state == "embed" else x.stored
            assert vector is not None
            out.append(VectorRecord(extra_image_key(pid, x.number), vector, x.metadata))
        return out

    def written(self) -> list[dict[str, MetadataValue]]:
        """The metadata of every vector this plan writes (an estimate's count)."""
        out: list[dict[str, MetadataValue]] = []
        if self.base in ("embed", "rewrite"):
            out += [self.metadata[t] for t in self.expected]
        out += [x.metadata for x in self.extras if x.state != "skip"]
        return out


def check_products(
    products: Iterable[Product], *, max_images: int, main_image_only: bool
) -> list[Product]:
    """The catalog as a list, checked before any call: Products with unique ids, each with
    at most ``max_images`` photos (unless only main photos are indexed).

    Raises:
        InvalidInputError: Something other than a Product, an id twice, or a product over the
            photo cap (named, with the ways out).
    """
    items = list(products)
    seen: set[str] = set()
    for i, product in enumerate(items):
        if not isinstance(product, Product):
            raise InvalidInputError(
                f"products[{i}] is a {type(product).__name__}, expected a Product"
            )
        if product.product_id in seen:
            raise InvalidInputError(f"product_id {product.product_id!r} appears twice")
        seen.add(product.product_id)
        count = len(product.all_images)
        if not main_image_only and count > max_images:
            raise InvalidInputError(
                f"product {product.product_id!r} has {count} photos (image + images), over "
                f"max_images_per_product={max_images}: raise the cap, drop photos, or index "
                "the main photo only (main_image_only=True; CLI --max-images, --main-image-only)"
            )
    return items


class Planner:
    """Builds :class:`ProductPlan` s for a store, an embedding model and a combined weight."""

    def __init__(
        self,
        store: VectorStore,
        *,
        limits: StoreLimits,
        model_id: str,
        weight: float,
        main_image_only: bool = False,
    ) -> None:
        self._store = store
        self._limits = limits
        self._model_id = model_id
        self._weight = weight
        self._main_only = main_image_only

    def plan(self, products: Sequence[Product], pool: ThreadPoolExecutor) -> list[ProductPlan]:
        """Plans for ``products``: prepared on ``pool`` (images read and hashed), then
        compared with the store in one read (two when products have extra photos)."""
        plans = list(pool.map(self.prepare, products))
        self.decide(plans)
        return plans

    def plan_ahead(
        self, windows: Sequence[Sequence[Product]], readers: int
    ) -> Generator[list[ProductPlan], None, None]:
        """The plans of each window, the next window planned (images read, store read) while
        the caller embeds this one: a throttled store's reads would otherwise leave the
        embedder idle."""
        if not windows:
            return
        with (
            ThreadPoolExecutor(1, thread_name_prefix="crossmodal-plan") as planner,
            ThreadPoolExecutor(readers, thread_name_prefix="crossmodal-read") as pool,
        ):
            upcoming = planner.submit(self.plan, windows[0], pool)
            for window in windows[1:]:
                plans = upcoming.result()
                upcoming = planner.submit(self.plan, window, pool)
                yield plans
            yield upcoming.result()

    def prepare(self, product: Product) -> ProductPlan:
        """Read the images, hash the content and build the metadata (no store or embed call)."""
        plan = ProductPlan(product)
        if not self._main_only:
            plan.extras = [ImagePlan(n, img) for n, img in enumerate(product.images, 2)]
        plan.image_input, plan.image_bytes, problem = _read_image(product.image)
        for x in plan.extras:
            if problem is None:
                x.image_input, x.image_bytes, problem = _read_image(x.image)
        if problem is not None:
            plan.fail("input", problem)
            return plan
        plan.content_hash = self._content_hash(product, _image_id(plan.image_input))
        types: list[ProductVectorType] = []
        if product.embedding_text.strip():
            types.append("text")
        if product.image is not None:
            types.append("image")
        types.append("combined")
        plan.expected = tuple(types)
        described: list[object] = [product.metadata, product.text, product.image, self._model_id]
        if product.title is not None:  # absent: the hash of a product from before titles
            described.append(product.title)
        # Absent without a group: products from before variant groups keep their hash.
        described += [v] if (v := variant_metadata(product.variant_group)) else []
        if plan.extras:  # absent: the hash of a product with one photo, as before
            described.append([x.image for x in plan.extras])
        plan.metadata_hash = hashlib.sha256(
            json.dumps(described, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:32]
        for vtype in plan.expected:
            md: dict[str, MetadataValue] = dict(product.metadata)
            md["type"] = vtype
            md["product_id"] = product.product_id
            if product.title is not None:
                md["title"] = product.title
            md["text"] = product.text
            if product.image is not None:
                md["image_path"] = product.image
            md.update(variant_metadata(product.variant_group))
            if plan.extras:
                md["image_count"] = 1 + len(plan.extras)
            md["content_hash"] = plan.content_hash
            md["metadata_hash"] = plan.metadata_hash
            md["embedding_model"] = self._model_id
            plan.metadata[vtype] = md
        for x in plan.extras:
            x.content_hash = self._image_hash(_image_id(x.image_input))
            x.metadata = {**plan.metadata["image"], "content_hash": x.content_hash}
            x.metadata["image_source"] = x.image
        self._check_metadata(plan)
        return plan

    def decide(self, plans: Sequence[ProductPlan]) -> None:
        """Compare each plan with what the store holds and set its action."""
        live = [p for p in plans if p.action != "fail"]
        keys = [product_key(t, p.product_id) for p in live for t in PRODUCT_TYPES]
        stored = {r.key: r for r in self._store.get(keys).records} if keys else {}
        # Extra photos: the keys the catalog names now and those the store says it holds.
        counts = {p.product_id: max(1 + len(p.extras), _stored_count(p, stored)) for p in live}
        extra = [k for pid, n in counts.items() for k in extra_image_keys(pid, n)]
        if extra:
            stored.update((r.key, r) for r in self._store.get(extra).records)
        for plan in live:
            self._decide_base(plan, stored)
            self._decide_extras(plan, stored, counts[plan.product_id])
            states = {x.state for x in plan.extras}
            if plan.base == "embed" or "embed" in states:
                plan.action = "embed"
            elif plan.base == "rewrite" or states & {"rewrite", "reuse"}:
                plan.action = "rewrite"
            else:
                plan.action = "skip"
            if plan.action != "skip":
                mine = extra_image_keys(plan.product_id, counts[plan.product_id])
                self._keep_tags(plan, [*plan.stored.values(), *_pick(stored, mine)])

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _decide_base(plan: ProductPlan, stored: Mapping[str, VectorRecord]) -> None:
        """What the text, image and combined vectors need."""
        pid = plan.product_id
        have = {
            t: stored[product_key(t, pid)] for t in PRODUCT_TYPES if product_key(t, pid) in stored
        }
        plan.stored = {r.key: r for r in have.values()}
        plan.stale = [product_key(t, pid) for t in have if t not in plan.expected]
        plan.base = "embed"
        if all(t in have for t in plan.expected) and all(
            have[t].metadata.get("content_hash") == plan.content_hash
            and have[t].metadata.get("type") == t
            for t in plan.expected
        ):
            # Keys added by other tools (tags written back, say) do not make a product
            # stale; a change of its own metadata does, and is rewritten without embedding.
            same_metadata = all(
                have[t].metadata.get("metadata_hash") == plan.metadata_hash for t in plan.expected
            )
            plan.base = "skip" if same_metadata else "rewrite"

    @staticmethod
    def _decide_extras(plan: ProductPlan, stored: Mapping[str, VectorRecord], count: int) -> None:
        """What each extra photo needs: a photo stored under any of the product's extra keys
        with the same content is never embedded again; stored photos the catalog no longer
        names are stale."""
        pid = plan.product_id
        have = {
            n: stored[extra_image_key(pid, n)]
            for n in range(2, count + 1)
            if extra_image_key(pid, n) in stored
        }
        by_hash = {
            r.metadata.get("content_hash"): r
            for r in have.values()
            if r.metadata.get("type") == "image"
        }
        for x in plan.extras:
            same = have.get(x.number)
            if same is not None and same.metadata.get("content_hash") == x.content_hash:
                x.stored = same.vector
                same_md = same.metadata.get("metadata_hash") == plan.metadata_hash
                x.state = "skip" if same_md and same.metadata.get("type") == "image" else "rewrite"
            elif x.content_hash in by_hash:
                x.stored, x.state = by_hash[x.content_hash].vector, "reuse"
            else:
                x.state = "embed"
        planned = {x.number for x in plan.extras}
        plan.stale += [extra_image_key(pid, n) for n in sorted(have) if n not in planned]

    def _content_hash(self, product: Product, image_id: str | None) -> str:
        payload = json.dumps(
            [
                _HASH_VERSION,
                self._model_id,
                self._store.dimension,
                product.embedding_text,
                image_id,
                self._weight,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _image_hash(self, image_id: str | None) -> str:
        payload = json.dumps([_IMAGE_HASH_VERSION, self._model_id, self._store.dimension, image_id])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _check_metadata(self, plan: ProductPlan, *, note: str = "") -> None:
        keyed = {product_key(t, plan.product_id): md for t, md in plan.metadata.items()}
        keyed.update((extra_image_key(plan.product_id, x.number), x.metadata) for x in plan.extras)
        problem = metadata_problem(self._store, self._limits, keyed, own=plan.product.metadata)
        if problem is not None:
            plan.fail("metadata", problem + note)

    def _keep_tags(self, plan: ProductPlan, stored: Sequence[VectorRecord]) -> None:
        """Carry tags written by other tools (``tags``, ``tag_*``) over to a rewrite.

        The tags are not part of the product's metadata (nor of its hash), so a rerun that
        rewrites the product for another reason would otherwise drop them. A product whose own
        metadata sets any tag key owns its tags: nothing is carried over.
        """
        if not stored or any(is_tag_key(k) for k in plan.product.metadata):
            return
        tags: dict[str, MetadataValue] = {}
        for record in stored:
            for k, v in record.metadata.items():
                if is_tag_key(k):
                    tags.setdefault(k, v)
        if not tags:
            return
        for md in [*plan.metadata.values(), *(x.metadata for x in plan.extras)]:
            md.update(tags)
        self._check_metadata(plan, note=" (with the tags kept from the stored vectors)")


def _read_image(image: str | None) -> tuple[bytes | str | None, int, str | None]:
    """A photo as the embedder gets it (bytes, or its ``s3://`` URI), its size, or why not."""
    if image is None:
        return None, 0, None
    if image.startswith("s3://"):
        return image, 0, None
    try:
        data = Path(image).read_bytes()
    except OSError as exc:
        return None, 0, f"cannot read image {image}: {exc.strerror or exc}"
    if not data:
        return None, 0, f"image {image} is empty"
    return data, len(data), None


def _image_id(image_input: bytes | str | None) -> str | None:
    if isinstance(image_input, bytes):
        return "sha256:" + hashlib.sha256(image_input).hexdigest()
    return image_input


def _stored_count(plan: ProductPlan, stored: Mapping[str, VectorRecord]) -> int:
    """The photos the store says the product had (``image_count`` of its stored vectors)."""
    best = 1
    for t in PRODUCT_TYPES:
        record = stored.get(product_key(t, plan.product_id))
        value = None if record is None else record.metadata.get("image_count")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > best:
            best = min(int(value), 1 + MAX_EXTRA_IMAGES)
    return best


def _pick(stored: Mapping[str, VectorRecord], keys: Sequence[str]) -> list[VectorRecord]:
    return [stored[k] for k in keys if k in stored]


def estimate(
    plans: Sequence[ProductPlan], *, dimension: int, batch_size: int, products: int
) -> CostEstimate:
    """What indexing ``plans`` takes: embedding calls, vectors, requests and bytes."""
    counts = dict.fromkeys(("unchanged", "metadata_only", "to_embed", "invalid"), 0)
    text = image = vectors = stale = vector_bytes = metadata_bytes = image_bytes = 0
    for plan in plans:
        if plan.action == "fail":
            counts["invalid"] += 1
            continue
        stale += len(plan.stale)
        if plan.action == "skip":
            counts["unchanged"] += 1
            continue
        counts["metadata_only" if plan.action == "rewrite" else "to_embed"] += 1
        parts = plan.parts
        text += "text" in parts
        image += sum(part != "text" for part in parts)
        if "image" in parts:
            image_bytes += plan.image_bytes
        image_bytes += sum(x.image_bytes for x in plan.extras if x.part in parts)
        written = plan.written()
        vectors += len(written)
        vector_bytes += 4 * dimension * len(written)
        metadata_bytes += sum(
            len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode())
            for md in written
        )
    return CostEstimate(
        products=products,
        unchanged=counts["unchanged"],
        metadata_only=counts["metadata_only"],
        to_embed=counts["to_embed"],
        invalid=counts["invalid"],
        text_calls=text,
        image_calls=image,
        vectors=vectors,
        stale_vectors=stale,
        put_requests=math.ceil(vectors / batch_size),
        vector_bytes=vector_bytes,
        metadata_bytes=metadata_bytes,
        image_bytes=image_bytes,
    )


def product_windows(
    items: Sequence[Product], *, size: int, first: int
) -> Iterator[Sequence[Product]]:
    """``items`` in windows of ``size``, the first ``first`` long and each next one twice the
    one before (up to ``size``): with a small ``first`` embedding starts after one small store
    read, and each window is planned while the one before (half its size) embeds."""
    start = 0
    while start < len(items):
        yield items[start : start + first]
        start, first = start + first, min(size, 2 * first)
