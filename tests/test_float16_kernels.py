"""float16 storage answers exactly with either kernel (numpy or NumKong, extra ``simd``)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap

import numkong
import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.stores import (
    LocalVectorStore,
    QueryMatch,
    StoreLimits,
    VectorRecord,
    open_store,
)
from crossmodal_search.stores._kernels import NumKongFloat16, NumpyFloat16

KERNELS = ("numpy", "numkong")


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
    wanted = keys if keys is not None else sorted(r.key for r in store.records())
    got = store.get(wanted)
    x = np.stack([r.vector for r in got.records]).astype(np.float64)
    q64 = q.astype(np.float64)
    if store.distance_metric == "cosine":
        dist = 1 - (x @ q64) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q64))
    else:
        dist = np.linalg.norm(x - q64, axis=1)
    ranked = sorted(zip(dist.tolist(), [r.key for r in got.records], strict=True))
    return [k for _, k in ranked[:top_k]]


def pairs(matches: list[QueryMatch]) -> list[tuple[str, float]]:
    return [(m.key, m.distance) for m in matches]


def make_store(
    vectors: npt.NDArray[np.float32], metric: str, kernel: str, **kwargs: object
) -> LocalVectorStore:
    store = LocalVectorStore(
        dimension=vectors.shape[1],
        distance_metric=metric,  # type: ignore[arg-type]
        storage_dtype="float16",
        float16_kernel=kernel,  # type: ignore[arg-type]
        limits=StoreLimits.relaxed(),
        **kwargs,  # type: ignore[arg-type]
    )
    store.put(
        [VectorRecord.create(f"k{i:05d}", v, {"shard": i % 3}) for i, v in enumerate(vectors)]
    )
    return store


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_both_kernels_return_the_exact_top_k_on_near_ties(metric: str) -> None:
    rows, q = near_ties(3000, 256, seed=1, equal_norms=metric == "euclidean")
    results = {}
    for kernel in KERNELS:
        store = make_store(rows, metric, kernel)
        assert store.float16_kernel == kernel
        results[kernel] = store.query(q, top_k=10)
        assert [m.key for m in results[kernel]] == exact_reference(store, q, 10)
    # The same keys and float64 distances, whichever kernel ran.
    assert pairs(results["numpy"]) == pairs(results["numkong"])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_query_many_and_filters_agree_across_kernels(metric: str) -> None:
    rng = np.random.default_rng(2)
    rows = rng.standard_normal((5000, 128)).astype(np.float32)
    queries = rng.standard_normal((7, 128)).astype(np.float32)
    stores = {k: make_store(rows, metric, k) for k in KERNELS}
    for flt in (None, {"shard": 1}, {"shard": {"$in": [0, 2]}}):
        answers = {
            k: [pairs(ms) for ms in s.query_many(queries, filter=flt)] for k, s in stores.items()
        }
        assert answers["numpy"] == answers["numkong"]
        for kernel, store in stores.items():  # query_many returns what query does, row by row
            assert [pairs(store.query(q, filter=flt)) for q in queries] == answers[kernel]


@pytest.mark.parametrize("magnitude", [1e-30, 1e-6, 1.0, 1e6, 1e30])
def test_query_magnitude_neither_overflows_nor_underflows_float16(magnitude: float) -> None:
    rows, q = near_ties(500, 64, seed=3)
    store = make_store(rows, "cosine", "numkong")
    scaled = (q.astype(np.float64) * magnitude).astype(np.float32)
    assert [m.key for m in store.query(scaled, top_k=5)] == exact_reference(store, scaled, 5)


def test_kernel_error_stays_within_its_bound_when_split_across_threads() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.standard_normal((40_000, 96)).astype(np.float16)
    queries = rng.standard_normal((3, 96)).astype(np.float32) * np.float32(50.0)
    kernel = NumKongFloat16(numkong, threads=4)  # 40k rows: two parts of 20k
    assert len(kernel._parts(matrix.shape[0])) == 2
    exact = matrix.astype(np.float64) @ queries.T.astype(np.float64)
    bound = (
        (kernel.error_bound(96) + 1e-5)
        * np.linalg.norm(matrix.astype(np.float64), axis=1)[:, None]
        * np.linalg.norm(queries.astype(np.float64), axis=1)[None, :]
    )
    for got in (kernel.dots(matrix, queries), kernel.dots(matrix, queries[:1])):
        assert got.shape == (40_000, got.shape[1])
        assert np.all(np.abs(got - exact[:, : got.shape[1]]) <= bound[:, : got.shape[1]])
    np.testing.assert_allclose(
        NumpyFloat16().dots(matrix, queries), exact, rtol=0, atol=float(bound.max())
    )


def test_kernel_option_is_validated_and_reported() -> None:
    with pytest.raises(InvalidInputError, match="float16_kernel must be one of"):
        LocalVectorStore(dimension=4, storage_dtype="float16", float16_kernel="blas")  # type: ignore[arg-type]
    assert LocalVectorStore(dimension=4).float16_kernel is None  # float32: no kernel
    store = open_store("memory:", dimension=4, storage_dtype="float16", float16_kernel="numpy")
    assert isinstance(store, LocalVectorStore) and store.float16_kernel == "numpy"
    assert LocalVectorStore(dimension=4, storage_dtype="float16").float16_kernel == "numkong"


def test_requiring_numkong_without_it_installed_is_a_clear_error() -> None:
    # A fresh interpreter where `import numkong` fails, as on an install without the extra.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numkong"] = None
        from crossmodal_search.stores import LocalVectorStore
        from crossmodal_search.errors import ConfigurationError
        store = LocalVectorStore(dimension=4, storage_dtype="float16")
        assert store.float16_kernel == "numpy", store.float16_kernel
        try:
            LocalVectorStore(dimension=4, storage_dtype="float16", float16_kernel="numkong")
        except ConfigurationError as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.startswith("ConfigurationError ")
    assert "pip install 'crossmodal-search[simd]'" in done.stdout


# Python 3.12+ warns when a threaded process forks; forking one is the point here.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_can_still_multiply() -> None:
    # The parent's thread pool does not survive fork(): a child (gunicorn --preload, a
    # multiprocessing "fork" worker) must not hang on it.
    kernel = NumKongFloat16(numkong, threads=2)
    matrix = np.random.default_rng(6).standard_normal((40_000, 32)).astype(np.float16)
    query = np.ones((1, 32), dtype=np.float32)
    expected = float(kernel.dots(matrix, query).sum())  # the parent starts its pool here

    def child(out: multiprocessing.Queue[float]) -> None:
        out.put(float(kernel.dots(matrix, query).sum()))

    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[float] = ctx.Queue()
    proc = ctx.Process(target=child, args=(out,))
    proc.start()
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
        pytest.fail("the forked child hung on the parent's thread pool")
    assert proc.exitcode == 0
    assert out.get(timeout=5) == expected
