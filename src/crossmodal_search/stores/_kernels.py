"""Row . query products over 16-bit rows: float16 stores and the scan copies of float32 ones.

numpy has no fast float16 product: it converts float16 to float32 one element at a time
(~1.7 ns each), so a float16 scan of 100k x 1024 costs ~170 ms of conversion against ~11 ms
for the float32 scan. NumKong (extra ``simd``) multiplies float16 or bfloat16 rows directly,
widening to float32 in registers, and reads half the bytes of float32: measured in
``docs/benchmarks.md``. numpy has no bfloat16 at all: bfloat16 rows are held as their uint16
bit patterns (:func:`to_bfloat16`) and handed to NumKong as such.

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
ScanDType = Literal["float16", "bfloat16"]
SCAN_DTYPES: tuple[ScanDType, ...] = ("float16", "bfloat16")

# float16 -> float32 conversion block (bytes of float32): small enough to stay in cache.
_CONVERT_BYTES = 4 * 1024 * 1024
# Rows below which splitting a product across threads costs more than it saves.
_ROWS_PER_THREAD = 16384


@dataclass(frozen=True)
class _Format:
    """A 16-bit row format: how NumKong names it, how numpy holds it, its rounding error."""

    name: ScanDType
    numkong: str  # dtype name for NumKong's pack and tensor functions
    storage: type[np.generic]  # numpy dtype holding the 16-bit values
    roundoff: float  # unit roundoff (relative error of one rounded component)
    subnormal: float  # largest absolute error of one component below the normal range
    flushes_products: bool  # the kernel flushes each tiny product to zero (bfloat16 dot units)

    def encode(self, block: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``block`` rounded to this format (round to nearest even), as numpy holds it."""
        if self.name == "float16":
            return np.asarray(block, dtype=np.float16)
        return to_bfloat16(block)

    def copy_error(self, dimension: int) -> float:
        """Bound on |(fmt(u) - u) . q| / |q| for a unit row u (a scan copy of a float32 row):
        each component is off by at most the roundoff (relative) or the subnormal error, and
        |u|_1 <= sqrt(d)."""
        return self.roundoff + 2.0 * self.subnormal * math.sqrt(dimension)

    def row_error(self, dimension: int) -> float:
        """Bound on the order-key error, relative to |query|, from a unit row held in this format
        (its components rounded, so its norm is 1 only to within rounding)."""
        return self.roundoff + self.copy_error(dimension)

    def query_error(self, dimension: int) -> float:
        """Bound on |computed - exact product| / (|row| |query|) from rounding the query (scaled
        to a largest component in (0.5, 1], so |q| > 0.5) and from subnormals: the query's
        rounding is a copy error of its own, and flushed products add up to d of them (|row| <= 1
        here)."""
        if self.flushes_products:
            return self.roundoff + 2.0 * self.subnormal * dimension
        return self.copy_error(dimension)


# float16: 10 stored mantissa bits (roundoff 2^-11), subnormals spaced 2^-24 (error 2^-25).
FLOAT16 = _Format("float16", "float16", np.float16, 2.0**-11, 2.0**-25, flushes_products=False)
# bfloat16: 7 stored mantissa bits (roundoff 2^-8); its kernels flush values below 2^-126.
BFLOAT16 = _Format("bfloat16", "bfloat16", np.uint16, 2.0**-8, 2.0**-126, flushes_products=True)


def to_bfloat16(block: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """float32 values rounded to bfloat16 (nearest, ties to even), as uint16 bit patterns.

    Finite input only (the store refuses NaN and infinity before anything is stored).
    """
    bits = np.ascontiguousarray(block, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds the dropped 16 bits to nearest, ties to even.
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    out: npt.NDArray[np.uint16] = (rounded >> np.uint32(16)).astype(np.uint16)
    return out


def from_bfloat16(bits: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """The float32 values of bfloat16 bit patterns (exact)."""
    wide = bits.astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


class DotKernel(Protocol):
    """Computes ``matrix @ queries.T`` for 16-bit rows and float32 queries."""

    @property
    def name(self) -> KernelName: ...

    @property
    def format(self) -> _Format:
        """The rows' format."""
        ...

    def dots(
        self, matrix: npt.NDArray[Any], queries: npt.NDArray[np.float32]
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

    @property
    def format(self) -> _Format:
        return FLOAT16

    def dots(
        self, matrix: npt.NDArray[Any], queries: npt.NDArray[np.float32]
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


class _WorkerPool:
    """A thread pool started on first use, and started afresh in a forked child."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def executor(self) -> ThreadPoolExecutor:
        if self._pid != os.getpid():
            # A forked child (gunicorn --preload, multiprocessing "fork") inherits the executor
            # but not its threads: work submitted to it would wait forever. Start afresh.
            self._lock = threading.Lock()
            self._pool = None
            self._pid = os.getpid()
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._threads, thread_name_prefix="crossmodal-simd"
                )
            return self._pool


class NumKongKernel:
    """NumKong's float16 or bfloat16 dot kernels, rows split across a small thread pool.

    The query is rounded to the rows' format too (the kernels take one dtype), after scaling by
    a power of two so that no component overflows or vanishes; :meth:`error_bound` covers that
    rounding.
    """

    def __init__(
        self,
        module: ModuleType,
        threads: int,
        fmt: _Format = FLOAT16,
        *,
        pool: _WorkerPool | None = None,
    ) -> None:
        self._nk = module
        self._format = fmt
        self._threads = max(1, threads)
        self._pool = pool if pool is not None else _WorkerPool(self._threads)

    @property
    def name(self) -> KernelName:
        return "numkong"

    @property
    def format(self) -> _Format:
        return self._format

    def __repr__(self) -> str:
        return (
            f"NumKongKernel({self._format.name}, version={self.version!r}, threads={self._threads})"
        )

    @property
    def version(self) -> str:
        return str(getattr(self._nk, "__version__", "unknown"))

    def with_format(self, fmt: _Format) -> NumKongKernel:
        """The same module and thread pool, for rows in ``fmt``."""
        if fmt == self._format:
            return self
        return NumKongKernel(self._nk, self._threads, fmt, pool=self._pool)

    def error_bound(self, dimension: int) -> float:
        return self._format.query_error(dimension)

    def dots(
        self, matrix: npt.NDArray[Any], queries: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        rows = matrix.shape[0]
        nq = queries.shape[0]
        out = np.empty((rows, nq), dtype=np.float32)
        if rows == 0:
            return out
        matrix = np.ascontiguousarray(matrix)
        scale = _power_of_two_scale(queries)
        encoded = self._format.encode(queries / scale[:, None])
        parts = self._parts(rows)
        if nq == 1:
            flat = out.reshape(rows)
            q1 = self._tensor(encoded[0])

            def work(start: int, stop: int) -> None:
                self._nk.dot(self._tensor(matrix[start:stop]), q1, out=flat[start:stop])

        else:
            packed = self._nk.dots_pack(self._tensor(encoded), dtype=self._format.numkong)
            target = self._nk.from_pointer(out.ctypes.data, out.shape, "float32", owner=out)
            whole = self._tensor(matrix)

            def work(start: int, stop: int) -> None:
                self._nk.dots_packed(whole, packed, out=target, start_row=start, end_row=stop)

        if len(parts) == 1:
            work(*parts[0])
        else:
            pool = self._pool.executor()
            for future in [pool.submit(work, start, stop) for start, stop in parts]:
                future.result()
        out *= scale[None, :]
        return out

    def _tensor(self, array: npt.NDArray[Any]) -> Any:
        """``array`` as NumKong reads it: float16 arrays as they are, bfloat16 bit patterns
        (uint16, C-contiguous) wrapped as a bfloat16 tensor over the same memory."""
        if self._format.storage is np.float16:
            return array
        array = np.ascontiguousarray(array)
        return self._nk.from_pointer(
            array.ctypes.data, array.shape, self._format.numkong, owner=array
        )

    def _parts(self, rows: int) -> list[tuple[int, int]]:
        count = max(1, min(self._threads, rows // _ROWS_PER_THREAD))
        step = -(-rows // count)
        return [(s, min(rows, s + step)) for s in range(0, rows, step)]


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


_numkong_kernel: NumKongKernel | None = None
_numkong_missing = False  # a failed import is not retried: it searches sys.path every time
_numkong_lock = threading.Lock()


def load_numkong(fmt: _Format = FLOAT16) -> NumKongKernel | None:
    """The shared NumKong kernel for ``fmt`` rows (one thread pool per process), or None if
    NumKong is not installed."""
    global _numkong_kernel, _numkong_missing
    with _numkong_lock:
        if _numkong_kernel is None and not _numkong_missing:
            try:
                import numkong
            except ImportError:
                _numkong_missing = True
                return None
            _numkong_kernel = NumKongKernel(numkong, min(_available_threads(), 16))
            logger.debug("16-bit kernel: %r", _numkong_kernel)
        return None if _numkong_kernel is None else _numkong_kernel.with_format(fmt)


def require_numkong(what: str, fmt: _Format = FLOAT16) -> NumKongKernel:
    """The NumKong kernel, or a ConfigurationError saying that ``what`` needs the extra."""
    kernel = load_numkong(fmt)
    if kernel is None:
        raise ConfigurationError(
            f"{what} needs the numkong package: pip install 'crossmodal-search[simd]'"
        )
    return kernel


def scan_format(choice: ScanDType | Any | None) -> _Format | None:
    """The format of a float32 store's scan copy for the ``scan_dtype=`` option (None: no copy),
    or an InvalidInputError for an unknown value."""
    if choice is None:
        return None
    if choice not in SCAN_DTYPES:
        raise InvalidInputError(f"scan_dtype must be None, 'bfloat16' or 'float16', got {choice!r}")
    return FLOAT16 if choice == "float16" else BFLOAT16


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
