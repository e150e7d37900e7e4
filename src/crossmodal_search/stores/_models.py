"""Records and matches exchanged with every :class:`VectorStore`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import MetadataValue, Vector


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One stored vector: a unique ``key``, its float32 ``vector`` and its ``metadata``."""

    key: str
    vector: Vector
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    @classmethod
    def create(
        cls, key: str, vector: npt.ArrayLike, metadata: Mapping[str, MetadataValue] | None = None
    ) -> VectorRecord:
        """Build a record from any array-like vector (converted to 1-D float32)."""
        return cls(key, np.asarray(vector, dtype=np.float32).reshape(-1), dict(metadata or {}))


@dataclass(frozen=True, slots=True)
class QueryMatch:
    """One query result. ``distance`` is the store metric's distance: lower is closer."""

    key: str
    distance: float
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GetResult:
    """Result of ``VectorStore.get``: found records in the order asked, and the missing keys."""

    records: tuple[VectorRecord, ...]
    missing: tuple[str, ...] = ()
