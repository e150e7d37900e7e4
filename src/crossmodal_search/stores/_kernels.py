"""Row . query products for float16 storage: numpy by default, NumKong's SIMD kernels if installed.

numpy has no fast float16 product: it converts float16 to float32 one element at a time
(~1.7 ns each), so a float16 scan of 100k x 1024 costs ~170 ms of conversion against ~11 ms
for the float32 scan. NumKong (extra ``simd``) multiplies float16 rows directly, widening to
float32 in registers, and reads half the bytes of float32: measured in ``docs/benchmarks.md``.

The store answers exactly either way: a kernel reports a bound on its error, and every row whose
approximate score is within that bound of the k-th best is re-scored in float64
(``LocalVectorStore._candidates``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from crossmodal_search.errors import ConfigurationError, InvalidInputError

logger = logging.getLogger(__name__)

Float16Kernel = Literal["auto", "numpy", "numkong"]
KernelName = Literal["numpy", "numkong"]
FLOAT16_KERNELS: tuple[Float16Kernel, ...] = ("auto", "numpy", "numkong")

# float16 -> float32 conversion block (bytes of float32): small enough to stay in cache.
_CONVERT_BYTES = 4 * 1024 * 1024
# Rows below which splitting a product across threads costs more than it saves.
_ROWS_PER_THREAD = 16384
# Unit roundoff of float16 (10 stored mantissa bits, round to nearest).
_F16_ROUNDOFF = 2.0**-11
# Largest absolute rounding error of a float16 subnormal (spacing 2**-24).
_F16_SUBNORMAL_ERROR = 2.0**-25


class DotKernel(Protocol):
    """Computes ``matrix @ queries.T`` for float16 rows and float32 queries."""

    @property
    def name(self) -> KernelName: ...

    def dots(
        self, matrix: npt.NDArray[np.float16], queries: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Products, shape ``(rows, queries)``, float32."""
        ...

    def error_bound(self, dimension: int) -> float:
        """Bound on |computed - exact product| relative to |row| * |query|, beyond float32
        rounding of the sum (which the store's tolerance already covers)."""
        ...


@dataclass(frozen=True)
class NumpyFloat16:
    """Converts cache-sized blocks of rows to float32 and multiplies them with BLAS."""

    @property
    def name(self) -> KernelName:
        return "numpy"

    def dots(
        self, matrix: npt.NDArray[np.float16], queries: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        qt = np.ascontiguousarray(queries.T)
        rows, dimension = matrix.shape
        out = np.empty((rows, queries.shape[0]), dtype=np.float32)
        rows_per_block = max(64, _CONVERT_BYTES // (4 * dimension))
        buf = np.empty((min(rows_per_block, rows), dimension), dtype=np.float32)
        for s in range(0, rows, rows_per_block):
            m = min(rows_per_block, rows - s)
            np.copyto(buf[:m], matrix[s : s + m])
            out[s : s + m] = buf[:m] @ qt
        return out

    def error_bound(self, dimension: int) -> float:
        return 0.0  # the rows are converted exactly; the query stays float32


class NumKongFloat16:
    """NumKong's float16 dot kernels, rows split across a small thread pool.

    The query is rounded to float16 too (the kernels take one dtype), after scaling by a power
    of two so that no component overflows; :meth:`error_bound` covers that rounding.
    """

    def __init__(self, module: ModuleType, threads: int) -> None:
        self._nk = module
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._pool_pid = os.getpid()

    @property
    def name(self) -> KernelName:
        return "numkong"

    def __repr__(self) -> str:
        return f"NumKongFloat16(version={self.version!r}, threads={self._threads})"

    @property
    def version(self) -> str:
        return str(getattr(self._nk, "__version__", "unknown"))

    def error_bound(self, dimension: int) -> float:
        # |sum x_i (q_i - fl16(q_i))| <= 2^-11 |x||q| + 2^-25 |x|_1, and |x|_1 <= sqrt(d)|x|;
        # the query is scaled so that its largest component is in (0.5, 1], hence |q| > 0.5.
        return _F16_ROUNDOFF + 2.0 * _F16_SUBNORMAL_ERROR * math.sqrt(dimension)

    def dots(
        self, matrix: npt.NDArray[np.float16], queries: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        rows = matrix.shape[0]
        nq = queries.shape[0]
        out = np.empty((rows, nq), dtype=np.float32)
        if rows == 0:
            return out
        matrix = np.ascontiguousarray(matrix)
        scale = _power_of_two_scale(queries)
        q16 = (queries / scale[:, None]).astype(np.float16)
        parts = self._parts(rows)
        if nq == 1:
            flat = out.reshape(rows)

            def work(start: int, stop: int) -> None:
                self._nk.dot(matrix[start:stop], q16, out=flat[start:stop])

        else:
            packed = self._nk.dots_pack(q16, dtype="float16")
            target = self._nk.from_pointer(out.ctypes.data, out.shape, "float32", owner=out)

            def work(start: int, stop: int) -> None:
                self._nk.dots_packed(matrix, packed, out=target, start_row=start, end_row=stop)

        if len(parts) == 1:
            work(*parts[0])
        else:
            pool = self._executor()
            for future in [pool.submit(work, start, stop) for start, stop in parts]:
                future.result()
        out *= scale[None, :]
        return out

    def _parts(self, rows: int) -> list[tuple[int, int]]:
        count = max(1, min(self._threads, rows // _ROWS_PER_THREAD))
        step = -(-rows // count)
        return [(s, min(rows, s + step)) for s in range(0, rows, step)]

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool_pid != os.getpid():
            # A forked child (gunicorn --preload, multiprocessing "fork") inherits the executor
            # but not its threads: work submitted to it would wait forever. Start afresh.
            self._pool_lock = threading.Lock()
            self._pool = None
            self._pool_pid = os.getpid()
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._threads, thread_name_prefix="crossmodal-float16"
                )
            return self._pool


def float16_row_error(dimension: int) -> float:
    """Bound on the order-key error from float16 unit rows not being exactly unit length.

    The store keeps each float16 row as ``fl16(x / |x|)`` and treats its norm as 1 in the order
    keys (``LocalVectorStore._order_keys``); rounding each component moves that norm by up to
    2^-11 (relative), so |row|^2 by up to ~2 * 2^-11, plus the subnormal components' share.
    """
    return 2.0 * _F16_ROUNDOFF + 2.0 * _F16_SUBNORMAL_ERROR * math.sqrt(dimension)


def _power_of_two_scale(queries: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Per query, the power of two that brings its largest component into (0.5, 1]."""
    peak = np.abs(queries).max(axis=1).astype(np.float64)
    peak[peak == 0] = 1.0
    scale: npt.NDArray[np.float32] = np.exp2(np.ceil(np.log2(peak))).astype(np.float32)
    return scale


def _available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_numkong_kernel: NumKongFloat16 | None = None
_numkong_missing = False  # a failed import is not retried: it searches sys.path every time
_numkong_lock = threading.Lock()


def load_numkong() -> NumKongFloat16 | None:
    """The shared NumKong kernel (one thread pool per process), or None if not installed."""
    global _numkong_kernel, _numkong_missing
    with _numkong_lock:
        if _numkong_kernel is None and not _numkong_missing:
            try:
                import numkong
            except ImportError:
                _numkong_missing = True
                return None
            _numkong_kernel = NumKongFloat16(numkong, min(_available_threads(), 16))
            logger.debug("float16 kernel: %r", _numkong_kernel)
        return _numkong_kernel


def require_numkong(what: str) -> NumKongFloat16:
    """The NumKong kernel, or a ConfigurationError saying that ``what`` needs the extra."""
    kernel = load_numkong()
    if kernel is None:
        raise ConfigurationError(
            f"{what} needs the numkong package: pip install 'crossmodal-search[simd]'"
        )
    return kernel


def validate_float16_kernel(choice: Float16Kernel | Any) -> Float16Kernel:
    """``choice`` if it names a kernel choice, else an InvalidInputError."""
    if choice not in FLOAT16_KERNELS:
        raise InvalidInputError(
            f"float16_kernel must be one of {', '.join(FLOAT16_KERNELS)}, got {choice!r}"
        )
    return choice


def resolve_float16_kernel(choice: Float16Kernel | Any) -> DotKernel:
    """The kernel for ``choice``: ``"auto"`` (NumKong when installed, else numpy), ``"numpy"``
    or ``"numkong"`` (an error when it is not installed)."""
    choice = validate_float16_kernel(choice)
    if choice == "numkong":
        return require_numkong("float16_kernel='numkong'")
    kernel = load_numkong() if choice == "auto" else None
    return kernel if kernel is not None else NumpyFloat16()
