"""Writes of ``S3VectorsStore`` split to the service limits and sent with bounded parallelism."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from crossmodal_search.errors import PartialWriteError

if TYPE_CHECKING:
    from mypy_boto3_s3vectors.type_defs import PutInputVectorTypeDef

__all__ = ["MAX_PUT_BATCH", "run_batches", "split_put"]

#: Vectors per ``PutVectors`` call (S3 Vectors "Limitations and restrictions").
MAX_PUT_BATCH = 500


def split_put(items: list[PutInputVectorTypeDef], budget: int) -> list[list[PutInputVectorTypeDef]]:
    """Greedy batches of <= 500 vectors and <= ``budget`` bytes of JSON each."""
    chunks: list[list[PutInputVectorTypeDef]] = []
    current: list[PutInputVectorTypeDef] = []
    size = 0
    for item in items:
        # botocore serialises with json.dumps defaults (", " separators, ASCII escapes).
        item_bytes = len(json.dumps(item)) + 2
        if current and (len(current) >= MAX_PUT_BATCH or size + item_bytes > budget):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_bytes
    if current:
        chunks.append(current)
    return chunks


def run_batches(
    verb: str,
    where: str,
    key_batches: list[list[str]],
    calls: list[Callable[[], None]],
    max_concurrency: int,
) -> None:
    """Run ``calls`` with bounded parallelism; report which keys landed if some failed.

    Raises:
        PartialWriteError: some batches were applied and others not (the first error chained).
        Exception: the first error, when no batch was applied.
    """
    if len(calls) == 1:
        calls[0]()
        return
    done: list[bool] = [False] * len(calls)
    errors: list[Exception] = []
    waiting = collections.deque(range(len(calls)))
    in_flight: dict[Future[None], int] = {}
    workers = min(max_concurrency, len(calls))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3vectors") as pool:
        while waiting or in_flight:
            # After a failure, send nothing new (it would likely fail too); let the
            # requests already in flight finish so the report is exact.
            while waiting and len(in_flight) < workers and not errors:
                i = waiting.popleft()
                in_flight[pool.submit(calls[i])] = i
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                i = in_flight.pop(future)
                exc = future.exception()
                if exc is None:
                    done[i] = True
                elif isinstance(exc, Exception):
                    errors.append(exc)
                else:  # KeyboardInterrupt and friends: stop now
                    raise exc
    if not errors:
        return
    written = [k for i, batch in enumerate(key_batches) if done[i] for k in batch]
    failed = [k for i, batch in enumerate(key_batches) if not done[i] for k in batch]
    first = errors[0]
    if not written:
        raise first
    raise PartialWriteError(
        f"{verb} to {where} was partial: {len(written)} keys applied, {len(failed)} not ({first})",
        written=written,
        failed=failed,
    ) from first
