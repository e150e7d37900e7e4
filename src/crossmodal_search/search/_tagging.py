"""Zero-shot product tagging in the shared text/image space (measured by
``crossmodal_search.evaluation.evaluate_tags``).

The tag vocabulary's labels are embedded as texts with purpose ``CLASSIFICATION`` (one
embedding call per label, whatever the catalog size). Each product is scored with the cosine
similarity between its *stored* vector (image or combined; nothing is re-embedded) and every
label. The chosen tags are written back as filterable metadata on **every** vector of the
product (text, image and combined), so ``searcher.search(..., filter={"tags": "red"})`` works
in any search mode and on any store:

* ``tags``: every chosen label (a list; S3 Vectors' ``$eq`` matches any element);
* ``tag_<group>``: the labels chosen in that group, for grouped vocabularies (e.g.
  ``tag_color``). The ``tag_`` prefix keeps catalog metadata such as ABO's ``color`` intact.

A product (or group) with no chosen label gets no key. Re-tagging replaces the previous
``tags``/``tag_*`` keys; other metadata is kept as stored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crossmodal_search._types import EmbeddingPurpose, MetadataValue, Scalar
from crossmodal_search.errors import ConfigurationError, DimensionMismatchError, InvalidInputError
from crossmodal_search.search._products import stored_image_keys
from crossmodal_search.search._schema import (
    TAG_GROUP_PREFIX,
    TAGS_KEY,
    ProductVectorType,
    image_number,
    is_tag_key,
    product_key,
)
from crossmodal_search.stores import VectorRecord

if TYPE_CHECKING:
    from crossmodal_search.embeddings import Embedder
    from crossmodal_search.stores import VectorStore

__all__ = [
    "DEFAULT_TEMPLATE",
    "ProductTags",
    "TagSource",
    "TagVocabulary",
    "TaggingReport",
    "load_vocabulary",
    "tag_products",
]

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {label} product"
#: The group name given to a plain list vocabulary (no per-group key is written for it).
UNGROUPED = "tags"

TagSource: TypeAlias = Literal["auto", "combined", "image", "text"]
#: The stored vector scored, in order of preference (``source="auto"``).
_SOURCES: tuple[ProductVectorType, ...] = ("combined", "image", "text")


class TagVocabulary(BaseModel):
    """Labels to tag with, optionally in groups, and how each label is phrased for embedding.

    Attributes:
        groups: ``{group: {label: prompt}}``. Build it with :meth:`from_labels` or
            :func:`load_vocabulary` rather than by hand.
        grouped: ``False`` for a plain list of labels: only ``tags`` is written.
        template: Phrases a label for embedding; must contain ``{label}``.

    Example:
        >>> vocab = TagVocabulary.from_labels({"color": ["red", "blue"], "category": ["mug"]})
        >>> vocab.prompt("color", "red")
        'a photo of a red product'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: dict[str, dict[str, str]]
    grouped: bool = True
    template: str = DEFAULT_TEMPLATE

    @field_validator("template")
    @classmethod
    def _template_has_label(cls, value: str) -> str:
        if "{label}" not in value:
            raise ValueError("template must contain '{label}'")
        try:
            value.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template is not a valid format string: {exc}") from None
        return value

    @field_validator("groups")
    @classmethod
    def _groups_valid(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        if not value:
            raise ValueError("the vocabulary has no groups")
        for group, labels in value.items():
            if not group.strip() or not group.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"group name {group!r} must be letters, digits, '_' or '-'")
            if not labels:
                raise ValueError(f"group {group!r} has no labels")
            for label in labels:
                if not label.strip():
                    raise ValueError(f"group {group!r} has an empty label")
        return value

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[str] | Mapping[str, Sequence[str] | Mapping[str, str]],
        *,
        template: str = DEFAULT_TEMPLATE,
    ) -> TagVocabulary:
        """Build a vocabulary from a list of labels or ``{group: labels}``.

        A group's labels may be a list (phrased with ``template``) or ``{label: prompt}``
        giving the exact text to embed for that label.

        Raises:
            InvalidInputError: empty vocabulary, empty or duplicate label, bad template.
        """
        grouped = isinstance(labels, Mapping)
        raw: Mapping[str, Any] = labels if isinstance(labels, Mapping) else {UNGROUPED: labels}
        groups: dict[str, dict[str, str]] = {}
        for group, entries in raw.items():
            if isinstance(entries, str) or not isinstance(entries, Sequence | Mapping):
                raise InvalidInputError(
                    f"vocabulary group {group!r} must be a list of labels or {{label: prompt}}"
                )
            prompts: dict[str, str] = {}
            items = (
                entries.items()
                if isinstance(entries, Mapping)
                else ((label, None) for label in entries)
            )
            for label, prompt in items:
                if not isinstance(label, str) or (
                    prompt is not None and not isinstance(prompt, str)
                ):
                    raise InvalidInputError(f"vocabulary group {group!r}: labels must be strings")
                name = label.strip()
                if name in prompts:
                    raise InvalidInputError(f"vocabulary group {group!r}: duplicate label {name!r}")
                prompts[name] = prompt if prompt else ""
            groups[str(group)] = prompts
        try:
            vocab = cls(groups=groups, grouped=grouped, template=template)
        except ValidationError as exc:
            raise InvalidInputError(
                "invalid tag vocabulary: " + "; ".join(e["msg"] for e in exc.errors())
            ) from None
        return vocab

    def prompt(self, group: str, label: str) -> str:
        """The text embedded for ``label`` of ``group``."""
        return self.groups[group][label] or self.template.format(label=label)

    def labels(self) -> list[tuple[str, str]]:
        """Every ``(group, label)`` pair in vocabulary order."""
        return [(g, label) for g, labels in self.groups.items() for label in labels]


def load_vocabulary(path: str | os.PathLike[str]) -> TagVocabulary:
    """Read a vocabulary from JSON (``.json``) or YAML (``.yaml``/``.yml``).

    The document is a list of labels, a mapping ``{group: [labels]}``, or
    ``{"template": "...", "groups": {group: [labels]}}`` (``groups`` may also be a list).

    Raises:
        InvalidInputError: unreadable file or invalid vocabulary.
        ConfigurationError: a YAML file without the ``yaml`` extra installed.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"vocabulary file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read vocabulary file {file}: {exc}") from exc
    data: Any
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigurationError(
                f"reading {file.name} needs PyYAML: pip install 'crossmodal-search[yaml]' "
                "(or give the vocabulary as JSON)"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"{file}: invalid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}"
            ) from None
    template = DEFAULT_TEMPLATE
    if isinstance(data, Mapping) and "groups" in data:
        extra = set(data) - {"groups", "template"}
        if extra:
            raise InvalidInputError(f"{file}: unknown vocabulary keys {sorted(extra)}")
        template = data.get("template", DEFAULT_TEMPLATE)
        if not isinstance(template, str):
            raise InvalidInputError(f"{file}: template must be a string")
        data = data["groups"]
    if not isinstance(data, Mapping | list):
        raise InvalidInputError(f"{file}: a vocabulary is a list of labels or {{group: labels}}")
    try:
        return TagVocabulary.from_labels(data, template=template)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{file}: {exc}") from None


class ProductTags(BaseModel):
    """The tags chosen for one product.

    Attributes:
        product_id: The product.
        source: The stored vector type that was scored (``image``, ``combined`` or ``text``).
        tags: Every chosen label, best score first.
        by_group: Chosen labels per group.
        scores: Cosine similarity of the product vector to every label (``group:label`` keys).
    """

    model_config = ConfigDict(frozen=True)

    product_id: str
    source: str
    tags: list[str]
    by_group: dict[str, list[str]]
    scores: dict[str, float]


class TaggingReport(BaseModel):
    """What :func:`tag_products` did.

    Attributes:
        products: Tags per product, in product id order.
        vectors_updated: Stored vectors re-written with the new metadata (0 on a dry run).
        label_embed_calls: Labels embedded (one embedding call each).
        skipped: Products without a vector of a usable type.
    """

    model_config = ConfigDict(frozen=True)

    products: list[ProductTags]
    vectors_updated: int
    label_embed_calls: int
    skipped: list[str] = Field(default_factory=list)

    def predicted(self) -> dict[str, list[str]]:
        """``{product_id: tags}``, ready for :func:`evaluate_tags`."""
        return {p.product_id: list(p.tags) for p in self.products}


def _unit(matrix: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.float32]]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: np.ndarray[Any, np.dtype[np.float32]] = (matrix / norms).astype(np.float32)
    return out


def _choose(
    scores: Mapping[str, float], threshold: float | None, top1: bool
) -> list[tuple[str, float]]:
    # A label no more similar than an orthogonal vector is no evidence, even as a group's best.
    ranked = sorted(((k, v) for k, v in scores.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    if threshold is not None:
        ranked = [(label, s) for label, s in ranked if s >= threshold]
    return ranked[:1] if top1 else ranked


def tag_products(
    store: VectorStore,
    embedder: Embedder,
    vocabulary: TagVocabulary,
    *,
    threshold: float | None = None,
    top1_per_group: bool = False,
    source: TagSource = "auto",
    product_ids: Iterable[str] | None = None,
    dry_run: bool = False,
) -> TaggingReport:
    """Tag the products of a store zero-shot and write the tags back as filterable metadata.

    Reads every record once (or just ``product_ids``' vectors), embeds each label once, and
    re-puts each tagged product's vectors with the new metadata in one ``put``.

    Args:
        store: A store indexed by :class:`~crossmodal_search.search.CrossmodalSearcher`
            (records carry ``product_id`` and ``type`` metadata).
        embedder: Embeds the label prompts (purpose ``CLASSIFICATION``); must produce the
            store's dimension.
        vocabulary: The labels.
        threshold: Keep labels whose cosine similarity is at least this.
        top1_per_group: Keep only the best label of each group (still subject to
            ``threshold`` when both are given). A label needs a positive similarity to be
            chosen either way.
        source: Which stored vector to score: ``combined``, ``image``, ``text``, or ``auto``
            (combined, else image, else text, per product).
        product_ids: Tag only these products (default: all in the store); unknown ids are
            ignored.
        dry_run: Compute the tags but write nothing.

    Raises:
        InvalidInputError: neither ``threshold`` nor ``top1_per_group`` given.
        ConfigurationError: the store marks ``tags`` as non-filterable.
        DimensionMismatchError: label vectors do not match the store's dimension.
    """
    if threshold is None and not top1_per_group:
        raise InvalidInputError("give a threshold, top1_per_group=True, or both")
    if source not in ("auto", *_SOURCES):
        raise InvalidInputError(f"source must be auto, combined, image or text, not {source!r}")
    blocked = {TAGS_KEY, *(TAG_GROUP_PREFIX + g for g in vocabulary.groups)}
    blocked &= set(store.non_filterable_metadata_keys)
    if blocked:
        raise ConfigurationError(
            f"the store marks {sorted(blocked)} non-filterable: tags could not be filtered on"
        )
    records_of = _records_by_product(store, product_ids)
    pairs = vocabulary.labels()
    labels = _label_vectors(store, embedder, [vocabulary.prompt(g, label) for g, label in pairs])
    order = [source] if source != "auto" else list(_SOURCES)
    results: list[ProductTags] = []
    skipped: list[str] = []
    updates: list[VectorRecord] = []
    for pid, records in sorted(records_of.items()):
        kinds = {r.metadata.get("type"): r for r in records if image_number(r.key) is None}
        chosen_type = next((t for t in order if t in kinds), None)
        if chosen_type is None:
            skipped.append(pid)
            continue
        vector = _unit(np.asarray(kinds[chosen_type].vector, dtype=np.float32).reshape(1, -1))[0]
        found = _tags_of(
            pid, chosen_type, labels @ vector, pairs, vocabulary, threshold, top1_per_group
        )
        results.append(found)
        updates += _retagged(records, found, grouped=vocabulary.grouped)
    if not dry_run and updates:
        store.put(updates)
    logger.info(
        "tagged %d products (%d vectors %s, %d skipped)",
        len(results),
        len(updates),
        "not written: dry run" if dry_run else "updated",
        len(skipped),
    )
    return TaggingReport(
        products=results,
        vectors_updated=0 if dry_run else len(updates),
        label_embed_calls=len(pairs),
        skipped=skipped,
    )


def _records_by_product(
    store: VectorStore, product_ids: Iterable[str] | None
) -> dict[str, list[VectorRecord]]:
    """The stored vectors of every product (or of ``product_ids``), by product."""
    wanted = None if product_ids is None else sorted(set(product_ids))
    records: Iterable[VectorRecord]
    if wanted is None:
        records = store.records()
    else:
        keys = [product_key(t, pid) for pid in wanted for t in _SOURCES]
        keys += stored_image_keys(store, wanted, batch_size=500)  # tags reach every photo
        records = store.get(keys).records
    wanted_set = set(wanted or ())
    records_of: dict[str, list[VectorRecord]] = {}
    for record in records:
        pid = record.metadata.get("product_id")
        if not isinstance(pid, str) or (wanted is not None and pid not in wanted_set):
            continue
        records_of.setdefault(pid, []).append(record)
    return records_of


def _label_vectors(
    store: VectorStore, embedder: Embedder, prompts: Sequence[str]
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The label prompts embedded for classification, as unit rows."""
    vectors = _unit(
        np.asarray(
            embedder.embed_texts(
                prompts, purpose=EmbeddingPurpose.CLASSIFICATION, dimension=store.dimension
            ),
            dtype=np.float32,
        ).reshape(len(prompts), -1)
    )
    if vectors.shape[1] != store.dimension:
        raise DimensionMismatchError(
            f"label vectors have {vectors.shape[1]} dimensions, the store {store.dimension}",
            expected=store.dimension,
            actual=vectors.shape[1],
        )
    return vectors


def _tags_of(
    pid: str,
    source: str,
    sims: np.ndarray[Any, np.dtype[np.float32]],
    pairs: Sequence[tuple[str, str]],
    vocabulary: TagVocabulary,
    threshold: float | None,
    top1: bool,
) -> ProductTags:
    """The labels chosen for one product from its similarities to every label."""
    scores = {f"{g}:{label}": float(s) for (g, label), s in zip(pairs, sims, strict=True)}
    by_group: dict[str, list[str]] = {}
    chosen: list[tuple[str, float]] = []
    for group, labels in vocabulary.groups.items():
        picked = _choose({label: scores[f"{group}:{label}"] for label in labels}, threshold, top1)
        by_group[group] = [label for label, _ in picked]
        chosen.extend(picked)
    tags: list[str] = []
    for label, _ in sorted(chosen, key=lambda kv: -kv[1]):
        if label not in tags:
            tags.append(label)
    return ProductTags(product_id=pid, source=source, tags=tags, by_group=by_group, scores=scores)


def _retagged(
    records: Sequence[VectorRecord], found: ProductTags, *, grouped: bool
) -> list[VectorRecord]:
    """The product's vectors with the new tag keys in place of the old ones."""
    updates = []
    for record in records:
        metadata: dict[str, MetadataValue] = {
            k: v for k, v in record.metadata.items() if not is_tag_key(k)
        }
        # No tag, no key: an empty list says nothing a missing key does not.
        if found.tags:
            tag_values: list[Scalar] = list(found.tags)
            metadata[TAGS_KEY] = tag_values
        if grouped:
            for group, picked in found.by_group.items():
                if picked:
                    group_values: list[Scalar] = list(picked)
                    metadata[TAG_GROUP_PREFIX + group] = group_values
        updates.append(VectorRecord(record.key, record.vector, metadata))
    return updates
