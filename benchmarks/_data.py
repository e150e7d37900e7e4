"""Synthetic vectors for the search benchmark (reproducible from a seed)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]

_CHUNK = 65_536


def random_unit(n: int, d: int, seed: int) -> Matrix:
    """``n`` i.i.d. Gaussian directions (the worst case for Matryoshka truncation)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        block = out[start : start + _CHUNK]
        rng.standard_normal(out=block, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def structured_unit(
    n: int, d: int, seed: int, *, clusters: int = 200, spread: float = 0.5
) -> Matrix:
    """Clustered unit vectors whose per-dimension scale decays like ``1/sqrt(i+1)``.

    The leading 256 of 1024 dimensions carry ~80 % of the variance, as in a Matryoshka-trained
    embedding; points scatter around ``clusters`` centres (categories of products).
    """
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(np.arange(d, dtype=np.float32) + 1.0)).astype(np.float32)
    centres = rng.standard_normal((clusters, d), dtype=np.float32) * scale
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        block = out[start : start + _CHUNK]
        rng.standard_normal(out=block, dtype=np.float32)
        block *= spread * scale
        block += centres[rng.integers(0, clusters, block.shape[0])]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(
    matrix: Matrix, queries: Matrix, k: int, *, rows: npt.NDArray[np.intp] | None = None
) -> list[list[int]]:
    """Exact float32 top-``k`` rows by dot product (optionally among ``rows`` only)."""
    sub = matrix if rows is None else matrix[rows]
    out: list[list[int]] = []
    for start in range(0, queries.shape[0], 64):
        scores = queries[start : start + 64] @ sub.T
        for s in scores:
            top = np.argpartition(-s, k)[:k] if k < s.shape[0] else np.arange(s.shape[0])
            top = top[np.argsort(-s[top], kind="stable")]
            out.append((rows[top] if rows is not None else top).tolist())
    return out


def recall_at(found: list[list[int]], truth: list[list[int]], k: int) -> float:
    """Mean fraction of the true top-``k`` found in each result's first ``k``."""
    hits = [len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")
