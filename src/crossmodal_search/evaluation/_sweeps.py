"""The settings a comparison evaluates: one factor of the base setting varied at a time."""

from __future__ import annotations

from collections.abc import Iterable

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation._reports import (
    EvalSettings,
    FusionName,
    PhotosName,
    SearchModeName,
    Sweep,
)

__all__ = ["hybrid_sweeps", "photo_sweeps", "setting_sweeps"]


def setting_sweeps(
    base: EvalSettings,
    search_modes: Iterable[SearchModeName],
    fusions: Iterable[FusionName],
    text_weights: Iterable[float],
    dimensions: Iterable[int],
) -> list[tuple[Sweep, EvalSettings]]:
    """Every setting compared: one factor of ``base`` varied at a time, each validated."""
    plan: list[tuple[Sweep, EvalSettings]] = []
    try:
        plan += [("search_mode", base.model_copy(update={"search_mode": m})) for m in search_modes]
        plan += [("fusion", base.model_copy(update={"fusion": f})) for f in fusions]
        for w in text_weights:
            changed = EvalSettings.model_validate({**base.model_dump(), "text_weight": w})
            plan.append(("text_weight", changed))
        for d in dimensions:
            changed = EvalSettings.model_validate({**base.model_dump(), "dimension": d})
            plan.append(("dimension", changed))
        for _, s in plan:
            EvalSettings.model_validate(s.model_dump())
    except ValueError as exc:
        raise InvalidInputError(f"invalid comparison setting: {exc}") from None
    return plan


def hybrid_sweeps(
    base: EvalSettings, hybrid: Iterable[bool], lexical_weights: Iterable[float]
) -> list[tuple[Sweep, EvalSettings]]:
    """Vector-only against hybrid search, and hybrid search at each lexical weight."""
    plan: list[tuple[Sweep, EvalSettings]] = []
    try:
        for on in hybrid:
            if not isinstance(on, bool):
                raise ValueError(f"hybrid settings are True or False, got {on!r}")
            plan.append(("hybrid", base.model_copy(update={"hybrid": on})))
        for w in lexical_weights:
            data = {**base.model_dump(), "hybrid": True, "lexical_weight": w}
            plan.append(("lexical_weight", EvalSettings.model_validate(data)))
    except ValueError as exc:
        raise InvalidInputError(f"invalid comparison setting: {exc}") from None
    return plan


def photo_sweeps(
    base: EvalSettings, photos: Iterable[PhotosName]
) -> list[tuple[Sweep, EvalSettings]]:
    """Each product's main photo only against every photo, searched in image vectors
    (``image`` mode unless the base searches ``image`` or ``all``). The main-photo setting
    searches a copy of the store without the extra photos: no embedding call."""
    mode = base.search_mode if base.search_mode in ("image", "all") else "image"
    plan: list[tuple[Sweep, EvalSettings]] = []
    for which in photos:
        if which not in ("main", "all"):
            raise InvalidInputError(f"photos settings are 'main' or 'all', got {which!r}")
        plan.append(("photos", base.model_copy(update={"photos": which, "search_mode": mode})))
    return plan
