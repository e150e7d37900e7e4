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

A product that lost its text or image has the stale vector listed for deletion. Tags written by
zero-shot tagging are carried over to a rewrite or a re-embed unless the product's own metadata
sets a tag key. :meth:`CrossmodalSearcher.index`, :meth:`~CrossmodalSearcher.estimate` and
:func:`index_with_batch` all consume these plans.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from crossmodal_search._types import MetadataValue, Vector
from crossmodal_search.search._catalog import Product
from crossmodal_search.search._results import CostEstimate, ItemFailure
from crossmodal_search.search._schema import (
    PRODUCT_TYPES,
    ProductVectorType,
    is_tag_key,
    metadata_problem,
    product_key,
    variant_metadata,
)
from crossmodal_search.search._vectors import unit, weighted_mean
from crossmodal_search.stores import StoreLimits, VectorRecord

if TYPE_CHECKING:
    from crossmodal_search.stores import VectorStore

__all__ = ["EmbedPart", "Planner", "ProductPlan", "estimate"]

_HASH_VERSION = "crossmodal-content-v1"

#: What an ``embed`` plan sends to the embedder.
EmbedPart: TypeAlias = Literal["text", "image"]
Action: TypeAlias = Literal["skip", "rewrite", "embed", "fail"]


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

    @property
    def product_id(self) -> str:
        return self.product.product_id

    @property
    def parts(self) -> tuple[EmbedPart, ...]:
        """What embedding this product takes (nothing unless its action is ``embed``)."""
        if self.action != "embed":
            return ()
        wanted: list[EmbedPart] = []
        if "text" in self.expected:
            wanted.append("text")
        if self.image_input is not None:
            wanted.append("image")
        return tuple(wanted)

    def fail(self, kind: Literal["input", "metadata"], reason: str) -> None:
        self.action = "fail"
        self.failure = ItemFailure(product_id=self.product_id, kind=kind, reason=reason)

    def rewritten(self) -> list[VectorRecord]:
        """A ``rewrite``: the stored vectors with the new metadata."""
        pid = self.product_id
        return [
            VectorRecord(product_key(t, pid), self.stored[product_key(t, pid)].vector, md)
            for t, md in self.metadata.items()
        ]

    def records(self, vectors: Mapping[EmbedPart, Vector], weight: float) -> list[VectorRecord]:
        """An ``embed``: the records from the embedded ``vectors`` (the combined one is the
        normalised ``weight``-ed mean of text and image, or the one that exists)."""
        out: dict[ProductVectorType, Vector] = {t: unit(v) for t, v in vectors.items()}
        if "text" in out and "image" in out:
            out["combined"] = weighted_mean(out["text"], out["image"], weight)
        else:
            out["combined"] = out["text"] if "text" in out else out["image"]
        pid = self.product_id
        return [VectorRecord(product_key(t, pid), out[t], self.metadata[t]) for t in self.expected]


class Planner:
    """Builds :class:`ProductPlan` s for a store, an embedding model and a combined weight."""

    def __init__(
        self, store: VectorStore, *, limits: StoreLimits, model_id: str, weight: float
    ) -> None:
        self._store = store
        self._limits = limits
        self._model_id = model_id
        self._weight = weight

    def plan(self, products: Sequence[Product], pool: ThreadPoolExecutor) -> list[ProductPlan]:
        """Plans for ``products``: prepared on ``pool`` (images read and hashed), then
        compared with the store in one read."""
        plans = list(pool.map(self.prepare, products))
        self.decide(plans)
        return plans

    def prepare(self, product: Product) -> ProductPlan:
        """Read the image, hash the content and build the metadata (no store or embed call)."""
        plan = ProductPlan(product)
        self._read_image(plan)
        if plan.action == "fail":
            return plan
        image_id: str | None = None
        if isinstance(plan.image_input, bytes):
            image_id = "sha256:" + hashlib.sha256(plan.image_input).hexdigest()
        elif isinstance(plan.image_input, str):
            image_id = plan.image_input
        plan.content_hash = self._content_hash(product, image_id)
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
            md["content_hash"] = plan.content_hash
            md["metadata_hash"] = plan.metadata_hash
            md["embedding_model"] = self._model_id
            plan.metadata[vtype] = md
        self._check_metadata(plan)
        return plan

    def decide(self, plans: Sequence[ProductPlan]) -> None:
        """Compare each plan with what the store holds and set its action."""
        live = [p for p in plans if p.action != "fail"]
        keys = [product_key(t, p.product_id) for p in live for t in PRODUCT_TYPES]
        stored = {r.key: r for r in self._store.get(keys).records} if keys else {}
        for plan in live:
            pid = plan.product_id
            have = {
                t: stored[product_key(t, pid)]
                for t in PRODUCT_TYPES
                if product_key(t, pid) in stored
            }
            plan.stored = {r.key: r for r in have.values()}
            plan.stale = [product_key(t, pid) for t in have if t not in plan.expected]
            if all(t in have for t in plan.expected) and all(
                have[t].metadata.get("content_hash") == plan.content_hash
                and have[t].metadata.get("type") == t
                for t in plan.expected
            ):
                # Keys added by other tools (tags written back, say) do not make a product
                # stale; a change of its own metadata does, and is rewritten without embedding.
                same_metadata = all(
                    have[t].metadata.get("metadata_hash") == plan.metadata_hash
                    for t in plan.expected
                )
                plan.action = "skip" if same_metadata else "rewrite"
            if plan.action != "skip":
                self._keep_tags(plan, list(have.values()))

    # ------------------------------------------------------------------ helpers

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

    @staticmethod
    def _read_image(plan: ProductPlan) -> None:
        image = plan.product.image
        if image is None:
            return
        if image.startswith("s3://"):
            plan.image_input = image
            return
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            plan.fail("input", f"cannot read image {image}: {exc.strerror or exc}")
            return
        if not data:
            plan.fail("input", f"image {image} is empty")
            return
        plan.image_input = data
        plan.image_bytes = len(data)

    def _check_metadata(self, plan: ProductPlan, *, note: str = "") -> None:
        keyed = {product_key(t, plan.product_id): md for t, md in plan.metadata.items()}
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
        for md in plan.metadata.values():
            md.update(tags)
        self._check_metadata(plan, note=" (with the tags kept from the stored vectors)")


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
        text += "text" in plan.parts
        image += "image" in plan.parts
        if plan.action == "embed":
            image_bytes += plan.image_bytes
        vectors += len(plan.expected)
        vector_bytes += 4 * dimension * len(plan.expected)
        metadata_bytes += sum(
            len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode())
            for md in plan.metadata.values()
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
