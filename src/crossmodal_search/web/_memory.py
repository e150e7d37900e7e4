"""Freed image buffers go back to the operating system (glibc's malloc keeps them otherwise)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: Allocations from this size up get their own memory mapping, unmapped again when freed.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_large_frees_to_the_system() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES` for this process.

    glibc starts by mapping allocations of 128 KiB and more, but raises that threshold to the
    size of the largest block freed (up to 32 MiB): after the first decoded photo, pixel buffers
    come from malloc's heaps, which keep freed memory. Measured on ``crossmodal serve``, 8
    concurrent 40 MP uploads then leave 90-200 MiB behind after each burst; with the threshold
    fixed, the server returns to its idle size. A threshold set by the environment
    (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``) is left alone. Returns whether it was set.
    """
    if not sys.platform.startswith("linux") or _set_by_environment():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    done = bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD_BYTES)))
    logger.debug("malloc mmap threshold fixed at %d bytes: %s", MMAP_THRESHOLD_BYTES, done)
    return done


def _set_by_environment() -> bool:
    return "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    )
