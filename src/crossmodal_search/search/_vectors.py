"""Vector arithmetic shared by indexing (the combined vector) and search (fused queries)."""

from __future__ import annotations

import math

import numpy as np

from crossmodal_search._types import Vector
from crossmodal_search.errors import InvalidInputError

__all__ = ["unit", "weighted_mean"]


def unit(v: Vector) -> Vector:
    """``v`` scaled to length 1, as float32.

    Raises:
        InvalidInputError: ``v`` is zero or not finite (an embedder must never return that).
    """
    n = float(np.linalg.norm(v))
    if not math.isfinite(n) or n == 0.0:
        raise InvalidInputError("the embedder returned a zero or non-finite vector")
    return (v / n).astype(np.float32)


def weighted_mean(a: Vector, b: Vector, weight_a: float) -> Vector:
    """The unit vector of ``weight_a * unit(a) + (1 - weight_a) * unit(b)``."""
    mixed = weight_a * unit(a) + (1.0 - weight_a) * unit(b)
    if float(np.linalg.norm(mixed)) < 1e-9:  # opposite vectors at equal weight: keep ``a``
        return unit(a)
    return unit(mixed.astype(np.float32))
