"""Zero-shot product tagging in the shared text/image space, and its evaluation.

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
from crossmodal_search.stores import VectorRecord

if TYPE_CHECKING:
    from crossmodal_search.embeddings import Embedder
    from crossmodal_search.stores import VectorStore

__all__ = [
    "DEFAULT_TEMPLATE",
    "ProductTags",
    "TagQuality",
    "TagScore",
    "TagSource",
    "TagVocabulary",
    "TaggingReport",
    "evaluate_tags",
    "load_vocabulary",
    "tag_products",
]

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {label} product"
TAGS_KEY = "tags"
GROUP_KEY_PREFIX = "tag_"
#: The group name given to a plain list vocabulary (no per-group key is written for it).
UNGROUPED = "tags"

TagSource: TypeAlias = Literal["auto", "combined", "image", "text"]
_VECTOR_TYPES = ("combined", "image", "text")


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

    Reads every record of the store once (or, with ``product_ids``, gets just those
    products' vectors by key), embeds each label once,
    then re-puts each tagged product's vectors with the new metadata in one ``put`` (the
    store validates the whole batch before writing anything).

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
    if source not in ("auto", *_VECTOR_TYPES):
        raise InvalidInputError(f"source must be auto, combined, image or text, not {source!r}")
    blocked = {TAGS_KEY, *(GROUP_KEY_PREFIX + g for g in vocabulary.groups)}
    blocked &= set(store.non_filterable_metadata_keys)
    if blocked:
        raise ConfigurationError(
            f"the store marks {sorted(blocked)} non-filterable: tags could not be filtered on"
        )
    wanted = None if product_ids is None else sorted(set(product_ids))
    wanted_set = set(wanted or ())
    if wanted is None:
        records: Iterable[VectorRecord] = store.records()
    else:
        # The searcher's key scheme ``{type}-{product_id}``: fetch just these products.
        records = store.get([f"{t}-{pid}" for pid in wanted for t in _VECTOR_TYPES]).records

    by_product: dict[str, dict[str, VectorRecord]] = {}
    records_of: dict[str, list[VectorRecord]] = {}
    for record in records:
        pid = record.metadata.get("product_id")
        kind = record.metadata.get("type")
        if not isinstance(pid, str) or (wanted is not None and pid not in wanted_set):
            continue
        records_of.setdefault(pid, []).append(record)
        if isinstance(kind, str):
            by_product.setdefault(pid, {})[kind] = record

    pairs = vocabulary.labels()
    prompts = [vocabulary.prompt(g, label) for g, label in pairs]
    label_vectors = _unit(
        np.asarray(
            embedder.embed_texts(
                prompts, purpose=EmbeddingPurpose.CLASSIFICATION, dimension=store.dimension
            ),
            dtype=np.float32,
        ).reshape(len(prompts), -1)
    )
    if label_vectors.shape[1] != store.dimension:
        raise DimensionMismatchError(
            f"label vectors have {label_vectors.shape[1]} dimensions, the store {store.dimension}",
            expected=store.dimension,
            actual=label_vectors.shape[1],
        )

    order = [source] if source != "auto" else list(_VECTOR_TYPES)
    results: list[ProductTags] = []
    skipped: list[str] = []
    updates: list[VectorRecord] = []
    for pid in sorted(records_of):
        kinds = by_product.get(pid, {})
        chosen_type = next((t for t in order if t in kinds), None)
        if chosen_type is None:
            skipped.append(pid)
            continue
        vector = _unit(np.asarray(kinds[chosen_type].vector, dtype=np.float32).reshape(1, -1))[0]
        sims = label_vectors @ vector
        scores = {f"{g}:{label}": float(s) for (g, label), s in zip(pairs, sims, strict=True)}
        by_group: dict[str, list[str]] = {}
        chosen: list[tuple[str, float]] = []
        for group, labels in vocabulary.groups.items():
            picked = _choose(
                {label: scores[f"{group}:{label}"] for label in labels}, threshold, top1_per_group
            )
            by_group[group] = [label for label, _ in picked]
            chosen.extend(picked)
        tags: list[str] = []
        for label, _ in sorted(chosen, key=lambda kv: -kv[1]):
            if label not in tags:
                tags.append(label)
        results.append(
            ProductTags(
                product_id=pid, source=chosen_type, tags=tags, by_group=by_group, scores=scores
            )
        )
        for record in records_of[pid]:
            metadata: dict[str, MetadataValue] = {
                k: v
                for k, v in record.metadata.items()
                if k != TAGS_KEY and not k.startswith(GROUP_KEY_PREFIX)
            }
            # No tag, no key: an empty list says nothing a missing key does not.
            if tags:
                tag_values: list[Scalar] = list(tags)
                metadata[TAGS_KEY] = tag_values
            if vocabulary.grouped:
                for group, picked_labels in by_group.items():
                    if picked_labels:
                        group_values: list[Scalar] = list(picked_labels)
                        metadata[GROUP_KEY_PREFIX + group] = group_values
            updates.append(VectorRecord(record.key, record.vector, metadata))

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
        label_embed_calls=len(prompts),
        skipped=skipped,
    )


class TagScore(BaseModel):
    """Quality of one tag over the labelled products.

    ``precision`` is 0.0 when the tag was never predicted, ``recall`` 0.0 when no product
    carries it (see ``predicted`` and ``support``).
    """

    model_config = ConfigDict(frozen=True)

    tag: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    true_positives: int


class TagQuality(BaseModel):
    """Tagging quality: per tag, micro-averaged (all decisions pooled) and macro-averaged
    (mean over tags that occur in the gold labels)."""

    model_config = ConfigDict(frozen=True)

    per_tag: dict[str, TagScore]
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    products: int


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def evaluate_tags(
    predicted: Mapping[str, Iterable[str]], gold: Mapping[str, Iterable[str]]
) -> TagQuality:
    """Precision and recall of predicted tags against known labels, per tag and averaged.

    Only products present in ``gold`` are scored (a product missing from ``predicted`` has no
    tags). Tags are compared case-insensitively.
    """
    gold_sets = {pid: {t.lower() for t in tags} for pid, tags in gold.items()}
    pred_sets = {pid: {t.lower() for t in predicted.get(pid, ())} for pid in gold_sets}
    vocab = sorted(set().union(*gold_sets.values(), *pred_sets.values()))
    per_tag: dict[str, TagScore] = {}
    tp_all = pred_all = gold_all = 0
    for tag in vocab:
        support = sum(tag in g for g in gold_sets.values())
        n_pred = sum(tag in p for p in pred_sets.values())
        tp = sum(tag in pred_sets[pid] and tag in g for pid, g in gold_sets.items())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / support if support else 0.0
        per_tag[tag] = TagScore(
            tag=tag,
            precision=precision,
            recall=recall,
            f1=_f1(precision, recall),
            support=support,
            predicted=n_pred,
            true_positives=tp,
        )
        tp_all += tp
        pred_all += n_pred
        gold_all += support
    micro_p = tp_all / pred_all if pred_all else 0.0
    micro_r = tp_all / gold_all if gold_all else 0.0
    occurring = [s for s in per_tag.values() if s.support > 0]
    macro_p = float(np.mean([s.precision for s in occurring])) if occurring else 0.0
    macro_r = float(np.mean([s.recall for s in occurring])) if occurring else 0.0
    macro_f = float(np.mean([s.f1 for s in occurring])) if occurring else 0.0
    return TagQuality(
        per_tag=per_tag,
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=_f1(micro_p, micro_r),
        macro_precision=macro_p,
        macro_recall=macro_r,
        macro_f1=macro_f,
        products=len(gold_sets),
    )
