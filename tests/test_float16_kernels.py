"""float16 storage answers exactly with either kernel (numpy or NumKong, extra ``simd``)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.stores import (
    LocalVectorStore,
    open_store,
)
from crossmodal_search.stores._kernels import (
    BFLOAT16,
    NumKongKernel,
    NumpyFloat16,
    from_bfloat16,
    to_bfloat16,
)
from tests.exact_helpers import build, exact_reference, near_ties, pairs

pytest.importorskip("numkong", reason="needs the 'simd' extra")

import numkong

KERNELS = ("numpy", "numkong")


def make_store(
    vectors: npt.NDArray[np.float32], metric: str, kernel: str, **kwargs: object
) -> LocalVectorStore:
    return build(vectors, metric, "float16", float16_kernel=kernel, **kwargs)


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
    for flt in (None, {"part": 1}, {"part": {"$in": [0, 2]}}):
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
    kernel = NumKongKernel(numkong, threads=4)  # 40k rows: two parts of 20k
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
    kernel = NumKongKernel(numkong, threads=2)
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


def test_bfloat16_rounding_is_to_nearest_with_ties_to_even() -> None:
    rng = np.random.default_rng(11)
    values = (rng.standard_normal(20_000) * 10.0 ** rng.uniform(-30, 30, 20_000)).astype(np.float32)
    bits = to_bfloat16(values)
    got = from_bfloat16(bits).astype(np.float64)
    # The two bfloat16 neighbours of each value: truncation and the next one up in magnitude.
    down = from_bfloat16((values.view(np.uint32) >> np.uint32(16)).astype(np.uint16))
    up = from_bfloat16((values.view(np.uint32) >> np.uint32(16)).astype(np.uint16) + 1)
    exact = values.astype(np.float64)
    nearest = np.minimum(np.abs(down - exact), np.abs(up - exact))
    assert np.all(np.abs(got - exact) == nearest)
    assert np.all(np.abs(got - exact) <= 2.0**-8 * np.abs(exact))
    # Exactly halfway between two bfloat16 values: the one with an even last bit wins.
    halfway = np.array([0x3F808000, 0x3F818000, 0xBF808000], dtype=np.uint32).view(np.float32)
    assert to_bfloat16(halfway).tolist() == [0x3F80, 0x3F82, 0xBF80]
    assert from_bfloat16(to_bfloat16(np.array([1.0, -2.5, 0.0], dtype=np.float32))).tolist() == [
        1.0,
        -2.5,
        0.0,
    ]


def test_bfloat16_kernel_error_stays_within_its_bound() -> None:
    # Unit rows (how a scan copy holds them) rounded to bfloat16, against the float32 originals.
    rng = np.random.default_rng(12)
    rows = rng.standard_normal((40_000, 96))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = (rng.standard_normal((3, 96)) * np.array([[1e-20], [1.0], [1e20]])).astype(np.float32)
    kernel = NumKongKernel(numkong, threads=4, fmt=BFLOAT16)
    exact = rows @ queries.T.astype(np.float64)
    bound = (kernel.error_bound(96) + BFLOAT16.copy_error(96) + 1e-5) * np.linalg.norm(
        queries.astype(np.float64), axis=1
    )
    copy = to_bfloat16(rows.astype(np.float32))
    assert np.all(np.abs(kernel.dots(copy, queries) - exact) <= bound)
    for i in range(3):  # one query at a time takes another kernel
        assert np.all(
            np.abs(kernel.dots(copy, queries[i : i + 1]) - exact[:, i : i + 1]) <= bound[i]
        )
    # The bound is not slack for its own sake: the errors come within a factor ~20 of it.
    worst = np.max(np.abs(kernel.dots(copy, queries) - exact) / bound)
    assert worst > 0.02
