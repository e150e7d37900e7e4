"""The filterable metadata keys of a store and example values, from a sample of its vectors."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from crossmodal_search.integrations._mcp_models import FilterKey, FilterKeysOutput
from crossmodal_search.search import RESERVED_METADATA_KEYS
from crossmodal_search.stores import VectorStore

__all__ = ["DEFAULT_SAMPLE_VECTORS", "sample_filter_keys"]

#: Vectors read to find the keys (a product has up to three; S3 Vectors lists 500 a page).
DEFAULT_SAMPLE_VECTORS = 3000
_EXAMPLES = 8
_EXAMPLE_CHARS = 64

_Scalar = str | int | float | bool


@dataclass
class _KeyStats:
    products: int = 0
    types: set[str] = field(default_factory=set)
    values: Counter[_Scalar] = field(default_factory=Counter)
    minimum: float | None = None
    maximum: float | None = None

    def add(self, value: object) -> None:
        self.products += 1
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            self.types.add(f"list of {'/'.join(sorted({_type(i) for i in value})) or 'nothing'}")
        else:
            self.types.add(_type(value))
        for item in items:
            if isinstance(item, str):
                self.values[item[:_EXAMPLE_CHARS]] += 1
            elif isinstance(item, bool):
                self.values[item] += 1
            elif isinstance(item, int | float):
                self.values[item] += 1
                number = float(item)
                self.minimum = number if self.minimum is None else min(self.minimum, number)
                self.maximum = number if self.maximum is None else max(self.maximum, number)


def _type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def sample_filter_keys(
    store: VectorStore, *, max_vectors: int = DEFAULT_SAMPLE_VECTORS
) -> FilterKeysOutput:
    """Each filterable key of the first ``max_vectors`` vectors' products: its types, how many
    products have it, its most common values and, for numbers, the range seen.

    Keys the searcher owns (``type``, ``product_id``, ``text``, ...) and keys the store keeps
    non-filterable are left out: a filter on them finds nothing or fails.
    """
    hidden = RESERVED_METADATA_KEYS | store.non_filterable_metadata_keys
    stats: dict[str, _KeyStats] = {}
    seen: set[str] = set()
    vectors = 0
    for record in itertools.islice(store.records(), max_vectors):
        vectors += 1
        owner = str(record.metadata.get("product_id", record.key))
        if owner in seen:
            continue  # the product's other vectors carry the same metadata
        seen.add(owner)
        for key, value in record.metadata.items():
            if key not in hidden:
                stats.setdefault(key, _KeyStats()).add(value)
    keys = [
        FilterKey(
            key=key,
            types=sorted(item.types),
            products=item.products,
            examples=[value for value, _ in item.values.most_common(_EXAMPLES)],
            minimum=item.minimum,
            maximum=item.maximum,
        )
        for key, item in sorted(stats.items(), key=lambda kv: (-kv[1].products, kv[0]))
    ]
    return FilterKeysOutput(keys=keys, sampled_products=len(seen), complete=vectors < max_vectors)
