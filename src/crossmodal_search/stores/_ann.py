"""Optional accelerators for the local store: a Matryoshka funnel and an HNSW graph.

An exact scan reads every stored byte per query, so its speed is bounded by memory bandwidth.
An accelerator answers the same top-k question while reading less:

* :class:`FunnelAccelerator` keeps a copy of the first ``prefix_dim`` dimensions (a quarter
  of the bytes for 256 of 1024), scans that, and re-ranks the best ``candidates`` rows at
  full dimension. It relies on Matryoshka-trained embeddings (Nova is one) putting
  most of the signal in the leading dimensions; on random vectors its recall is poor.
* :class:`HnswAccelerator` builds an HNSW graph with `hnswlib` (extra ``ann``). Queries visit
  a few thousand rows instead of all of them; building takes from ~7 s (clustered data) to
  ~50 s (random data) per 100k x 1024 rows on two shared cores, and is done lazily on the
  first query, or with ``background=True`` on a worker thread while the store keeps writing
  (queries are exact until it is ready); later puts and deletes are applied to the graph
  incrementally.

Both are approximate; both honour filters exactly: a row outside the filter is never returned.
When a filter keeps few rows, they scan exactly those rows (cheaper than any index, and
exact); otherwise they over-fetch and widen the search until ``top_k`` allowed rows are found,
falling back to the exact scan if widening does not get there.

The store owns the vectors; an accelerator holds derived state only. The store tells it about
changes (:meth:`Accelerator.update`, :meth:`Accelerator.remove`, :meth:`Accelerator.invalidate`)
and passes its current matrix to :meth:`Accelerator.search`. Rows are the store's row numbers;
they may be raw vectors, or unit vectors plus their norms (how a float16 store keeps them).
Measured speed and recall: ``docs/benchmarks.md``.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._ann_background import WeakRowSource
from crossmodal_search.stores._ann_funnel import FunnelAccelerator
from crossmodal_search.stores._ann_hnsw import HnswAccelerator
from crossmodal_search.stores._ann_scan import (
    Accelerator,
    BackgroundAccelerator,
    Hits,
    RowSource,
    exact_search,
)

__all__ = [
    "Accelerator",
    "AcceleratorName",
    "BackgroundAccelerator",
    "FunnelAccelerator",
    "Hits",
    "HnswAccelerator",
    "RowSource",
    "WeakRowSource",
    "exact_search",
    "make_accelerator",
]


AcceleratorName: TypeAlias = Literal["funnel", "hnsw"]


def make_accelerator(spec: AcceleratorName | Accelerator | None) -> Accelerator | None:
    """Resolve the ``accelerator=`` option of the local store.

    Args:
        spec: ``"funnel"``, ``"hnsw"``, an :class:`Accelerator` instance, or ``None``.

    Raises:
        ConfigurationError: unknown name, or ``"hnsw"`` without the ``ann`` extra.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "funnel":
            return FunnelAccelerator()
        if spec == "hnsw":
            return HnswAccelerator()
        raise ConfigurationError(
            f"unknown accelerator {spec!r}: use 'funnel', 'hnsw', an Accelerator or None"
        )
    if isinstance(spec, Accelerator):
        return spec
    raise ConfigurationError(f"accelerator must be a name or an Accelerator, not {type(spec)!r}")
