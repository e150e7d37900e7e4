"""How good zero-shot tags are: precision, recall and F1 against gold labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = ["TagQuality", "TagScore", "evaluate_tags"]


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
