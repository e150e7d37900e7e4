"""Variant groups: one hit per product family (``collapse="variant"``).

Products that name the same :attr:`~crossmodal_search.search.Product.variant_group` (one shirt
in three colours) are one hit: the member ranked best, with the other members the query found
in :attr:`~crossmodal_search.search.SearchResult.variants`. ``top_k`` counts groups, so the
ranking is asked for more products than ``top_k``: first ``4 * top_k``, then the store's cap,
then, while groups are still missing and the store has more, the next products with the groups
already found excluded by the filter (``variant_group $nin``, ``product_id $nin`` for products
without a group; both stores treat a missing key as matching ``$nin``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, TypeAlias, get_args

from crossmodal_search._types import Filter
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search._results import SearchResult, VariantMatch
from crossmodal_search.search._schema import VARIANT_GROUP_KEY

__all__ = ["COLLAPSES", "Collapse", "and_filters", "check_collapse", "collapse_variants"]

#: One hit per product (default), or one per variant group.
Collapse: TypeAlias = Literal["product", "variant"]
COLLAPSES: tuple[str, ...] = get_args(Collapse)

#: Ranks ``k`` products matching a filter, best first (one search, its query embedded once).
RankFn: TypeAlias = Callable[[int, Filter | None], list[SearchResult]]

#: Most rankings one collapsed search runs (each excludes the groups already found).
_MAX_ROUNDS = 8
#: Products asked for per group wanted, in the first ranking.
_PER_GROUP = 4


def check_collapse(collapse: object) -> Collapse:
    """``collapse`` itself, or InvalidInputError naming the accepted values."""
    if collapse == "product" or collapse == "variant":
        return collapse
    raise InvalidInputError(f"collapse must be one of {', '.join(COLLAPSES)}; got {collapse!r}")


def and_filters(*parts: Filter | None) -> Filter | None:
    """The filters given AND-ed (None when there is none)."""
    present = [dict(p) for p in parts if p]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"$and": present}


def collapse_variants(
    rank: RankFn, *, top_k: int, filter: Filter | None, max_fetch: int
) -> list[SearchResult]:
    """The ``top_k`` best groups that ``rank`` finds, each as its best member with the other
    members found listed in ``variants``; a product without a group is a group of its own."""
    fetch = min(max_fetch, top_k * _PER_GROUP)
    groups: dict[str, list[SearchResult]] = {}
    exclude: Filter | None = None
    for _ in range(_MAX_ROUNDS):
        results = rank(fetch, and_filters(filter, exclude))
        if exclude is None:
            groups.clear()  # a longer ranking starts with the shorter one: count it again
        for result in results:
            groups.setdefault(_group_key(result), []).append(result)
        if len(groups) >= top_k or len(results) < fetch:
            break
        if fetch < max_fetch:
            fetch = max_fetch
            continue
        exclude = _excluding(groups.values())
    return [_with_variants(members) for members in list(groups.values())[:top_k]]


def _group_key(result: SearchResult) -> str:
    if result.variant_group is not None:
        return "group:" + result.variant_group
    return "product:" + result.product_id


def _excluding(groups: Iterable[list[SearchResult]]) -> Filter:
    """A filter leaving out every product of the groups found so far."""
    members = [m for g in groups for m in g]
    names = sorted({m.variant_group for m in members if m.variant_group is not None})
    loose = sorted({m.product_id for m in members if m.variant_group is None})
    parts: list[Filter] = []
    if names:
        parts.append({VARIANT_GROUP_KEY: {"$nin": names}})
    if loose:
        parts.append({"product_id": {"$nin": loose}})
    combined = and_filters(*parts)
    assert combined is not None  # at least one group was found
    return combined


def _with_variants(members: list[SearchResult]) -> SearchResult:
    best, others = members[0], members[1:]
    if not others:
        return best
    variants = tuple(
        VariantMatch(product_id=m.product_id, title=m.title, similarity=m.similarity, score=m.score)
        for m in others
    )
    return best.model_copy(update={"variants": variants})
