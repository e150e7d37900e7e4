"""Reference answers for exact search: float64 brute force and near-tie data sets."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from crossmodal_search.stores import LocalVectorStore, QueryMatch, StoreLimits, VectorRecord


def near_ties(
    n: int, d: int, seed: int, *, equal_norms: bool = False
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Rows whose cosine with the query differ by ~1e-5 around the top: closer than the float16
    rounding of the query, so a kernel that ignored its own error would return wrong rows."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(d).astype(np.float32)
    q /= np.linalg.norm(q)
    noise = rng.standard_normal((n, d)).astype(np.float32)
    noise -= np.outer(noise @ q, q)  # orthogonal to q
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = 0.9 + 1e-5 * rng.standard_normal(n)
    rows = cos[:, None] * q + np.sqrt(1 - cos**2)[:, None] * noise
    if not equal_norms:  # equal norms keep euclidean distances as close as the cosines
        rows *= rng.uniform(0.5, 3.0, size=(n, 1))
    return rows.astype(np.float32), q


def exact_reference(
    store: LocalVectorStore, q: npt.NDArray[np.float32], top_k: int, keys: list[str] | None = None
) -> list[str]:
    """The top keys by float64 distance over the vectors the store holds (ties by key)."""
    return exact_references(store, q[None, :], top_k, keys)[0]


def exact_references(
    store: LocalVectorStore,
    queries: npt.NDArray[np.float32],
    top_k: int,
    keys: list[str] | None = None,
) -> list[list[str]]:
    """:func:`exact_reference` for each query, reading the stored vectors once."""
    wanted = keys if keys is not None else sorted(r.key for r in store.records())
    got = store.get(wanted)
    names = [r.key for r in got.records]
    x = np.stack([r.vector for r in got.records]).astype(np.float64)
    answers = []
    for q in queries:
        q64 = q.astype(np.float64)
        if store.distance_metric == "cosine":
            dist = 1 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))
        else:
            dist = np.linalg.norm(x - q64, axis=1)
        ranked = sorted(zip(dist.tolist(), names, strict=True))
        answers.append([k for _, k in ranked[:top_k]])
    return answers


def pairs(matches: list[QueryMatch]) -> list[tuple[str, float]]:
    return [(m.key, m.distance) for m in matches]


def options_for(dtype: str) -> dict[str, object]:
    """``"float32"``, ``"float16"`` or ``"float32+bfloat16"`` (a float32 store and its scan copy)
    as LocalVectorStore options."""
    storage, _, scan = dtype.partition("+")
    return {"storage_dtype": storage, "scan_dtype": scan or None}


def build(
    vectors: npt.NDArray[np.float32], metric: str, dtype: str, **options: object
) -> LocalVectorStore:
    """A relaxed-limits store of ``dtype`` holding ``vectors`` as k00000... with a "part" key."""
    store = LocalVectorStore(
        dimension=vectors.shape[1],
        distance_metric=metric,  # type: ignore[arg-type]
        limits=StoreLimits.relaxed(),
        **options_for(dtype),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    store.put([VectorRecord.create(f"k{i:05d}", v, {"part": i % 3}) for i, v in enumerate(vectors)])
    return store
