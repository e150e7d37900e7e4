"""One ``index`` run: the embedding calls of its plans, the writes, and what failure does.

The embedder's retry policy retries each call; :class:`IngestPolicy` decides what happens once a
call's retries are spent, so that no product and no throttling storm stops the rest of a
catalog, and no finished embedding is thrown away.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from crossmodal_search._types import EmbeddingPurpose, Vector
from crossmodal_search.embeddings import Embedder
from crossmodal_search.errors import (
    ConfigurationError,
    CrossmodalSearchError,
    EmbeddingJobError,
    InvalidInputError,
    RetryExhaustedError,
    ServiceError,
    ServiceValidationError,
    TransientServiceError,
)
from crossmodal_search.search._planner import EmbedPart, ProductPlan
from crossmodal_search.search._results import IngestReport, IngestStoppedError, ItemFailure
from crossmodal_search.stores import VectorRecord, VectorStore

__all__ = [
    "EmbedFn",
    "IngestPolicy",
    "IngestRun",
    "ProgressCallback",
    "embed_with",
    "int_setting",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
#: How a run gets one vector of a plan: an embedder call, or a batch job's result.
EmbedFn = Callable[[ProductPlan, EmbedPart], Vector]
#: In the last window, records are written in batches of this many (at most ``batch_size``):
#: the embedder is busy while they are written, and the last write, which it waits for, is short.
TAIL_BATCH = 100


def int_setting(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` when it is an int in ``low..high``.

    Raises:
        ConfigurationError: It is not (the message names the setting).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigurationError(f"{name} must be {span}, got {value}")
    return value


def embed_with(embedder: Embedder) -> EmbedFn:
    """One indexing call of ``embedder`` per part (purpose ``GENERIC_INDEX``)."""

    def embed(plan: ProductPlan, part: EmbedPart) -> Vector:
        purpose = EmbeddingPurpose.GENERIC_INDEX
        value = plan.input_of(part)
        if part == "text":
            assert isinstance(value, str)
            return embedder.embed_text(value, purpose=purpose)
        return embedder.embed_image(value, purpose=purpose)

    return embed


#: Errors about one product's own input: the product fails, a rerun fails it again until the
#: product is fixed. Every other service error fails the product as retryable (IngestPolicy).
_INPUT_ERRORS: tuple[type[CrossmodalSearchError], ...] = (
    InvalidInputError,
    ServiceValidationError,
    EmbeddingJobError,
)


@dataclass(frozen=True, kw_only=True)
class IngestPolicy:
    """How :meth:`CrossmodalSearcher.index` keeps going when products fail.

    The embedder's retry policy retries each call first; this policy decides what happens once
    a call's retries are spent. A product whose error concerns its own input fails at once; one
    that met throttling or a service fault is tried again later in the same run; an error that
    repeats for product after product stops the run.

    Attributes:
        max_consecutive_failures: Products failing in a row with the same service error (not
            a validation error) after which the run stops with :class:`IngestStoppedError`:
            an error every product meets (default 10).
        product_attempts: Rounds a product that met a transient error is tried in one run
            before it is reported as failed and ``retryable`` (default 3).
        storm_threshold: Products failing in a row on transient errors that pause the run
            (default 3): no new embedding call starts until the pause ends.
        pause_seconds: The first pause; pauses in a row (no product succeeded in between)
            double, up to ``max_pause_seconds`` (defaults 5 and 60).
        pause_budget_seconds: Pausing allowed in one run, in total; when the next pause would
            pass it, the run stops with :class:`IngestStoppedError` (default 600).
        sleep: The sleep function (tests pass a recorder).
    """

    max_consecutive_failures: int = 10
    product_attempts: int = 3
    storm_threshold: int = 3
    pause_seconds: float = 5.0
    max_pause_seconds: float = 60.0
    pause_budget_seconds: float = 600.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_consecutive_failures", "product_attempts", "storm_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"IngestPolicy.{name} must be an int >= 1, got {value!r}")
        for name in ("pause_seconds", "max_pause_seconds", "pause_budget_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"IngestPolicy.{name} must be a number >= 0")


@dataclass
class _Embedding:
    """One product being embedded in an ``index`` run: the vectors it has so far."""

    plan: ProductPlan
    vectors: dict[EmbedPart, Vector] = field(default_factory=dict)
    jobs: dict[EmbedPart, Future[Vector]] = field(default_factory=dict)
    rounds: int = 0
    # The run's pause epoch when each call started: a failure from before the last pause
    # was answered by that pause already.
    epochs: dict[EmbedPart, int] = field(default_factory=dict)
    # The transient error that deferred it to a later round, if any.
    deferred_by: tuple[EmbedPart, CrossmodalSearchError] | None = None

    def missing(self) -> list[EmbedPart]:
        return [part for part in self.plan.parts if part not in self.vectors]


class IngestRun:
    """The mutable state of one ``index`` call: buffer, counters, failures and the policy's
    bookkeeping (failures in a row, pauses)."""

    def __init__(
        self,
        *,
        embed: EmbedFn,
        store: VectorStore,
        policy: IngestPolicy,
        weight: float,
        batch_size: int,
        total: int,
        progress: ProgressCallback | None,
    ) -> None:
        self._embed = embed
        self._store = store
        self._policy = policy
        self._weight = weight
        self._batch_size = batch_size
        self._total = total
        self._progress = progress
        self._done = 0
        self._flush_at = batch_size
        self._buffer: list[VectorRecord] = []
        self._stale: list[str] = []
        self._store_failed = False
        self._lock = threading.Lock()
        self._embed_calls = 0
        self.indexed = 0
        self.skipped = 0
        self.written = 0
        self.deleted = 0
        self.pruned = 0
        self.failed: list[ItemFailure] = []
        # Products with embedding calls submitted and not yet settled (drained on a stop), and
        # products waiting for a later round (reported as retryable failures on a stop).
        self._open: list[_Embedding] = []
        self._deferred: list[_Embedding] = []
        # No call starts while the gate is closed (a pause through a throttling storm).
        self._gate = threading.Event()
        self._gate.set()
        self._same_code: tuple[str, int] = ("", 0)
        # The products (not attempts: one product failing round after round is no storm)
        # that failed in a row on transient errors.
        self._transient_in_row: set[str] = set()
        self._next_pause = self._policy.pause_seconds
        self._paused = 0.0
        self._epoch = 0

    def _tick(self) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress(self._done, self._total)

    def _call(self, item: _Embedding, part: EmbedPart) -> Vector:
        self._gate.wait()
        with self._lock:
            self._embed_calls += 1
            item.epochs[part] = self._epoch
        return self._embed(item.plan, part)

    def _submit(self, item: _Embedding, pool: ThreadPoolExecutor) -> None:
        item.rounds += 1
        item.jobs = {part: pool.submit(self._call, item, part) for part in item.missing()}
        self._open.append(item)

    def run(
        self,
        windows: Iterable[Sequence[ProductPlan]],
        max_concurrency: int,
        *,
        started: float,
    ) -> IngestReport:
        """Settle each window of plans, write the rest, and report (a stop or an error keeps
        what was embedded; see :meth:`abort`)."""
        with ThreadPoolExecutor(max_concurrency, thread_name_prefix="crossmodal") as pool:
            try:
                for plans in windows:
                    self.window(plans, pool)
                self.flush(final=True)
            except IngestStoppedError as exc:
                self.abort(pool)
                exc.report = self.report(time.perf_counter() - started)
                raise
            except BaseException:
                self.abort(pool)
                raise
        return self.report(time.perf_counter() - started)

    def window(self, plans: Sequence[ProductPlan], pool: ThreadPoolExecutor) -> None:
        """Settle every plan of a window: write, skip, fail, or embed (retrying products that
        met transient errors, in later rounds of the same window)."""
        if self._done + len(plans) >= self._total:  # the last window
            self._flush_at = min(self._batch_size, TAIL_BATCH)
        embedding = {id(p): _Embedding(p) for p in plans if p.action == "embed"}
        for item in embedding.values():
            self._submit(item, pool)
        deferred: list[_Embedding] = []
        for plan in plans:
            current = embedding.get(id(plan))
            if current is None:
                self._settle_plan(plan)
            elif not self._settle(current):
                deferred.append(current)
                continue
            self._tick()
            self.flush(final=False)
        while deferred:
            for item in deferred:
                self._submit(item, pool)
            retry, deferred = deferred, []
            for item in retry:
                if self._settle(item):
                    self._tick()
                    self.flush(final=False)
                else:
                    deferred.append(item)

    def _settle_plan(self, plan: ProductPlan) -> None:
        """A product that needs no embedding call: failed, unchanged or metadata-only."""
        pid = plan.product.product_id
        if plan.action == "fail":
            assert plan.failure is not None
            self.failed.append(plan.failure)
            logger.info("not indexed: %s: %s", pid, plan.failure.reason)
        elif plan.action == "skip":
            self.skipped += 1
            self._stale.extend(plan.stale)
        else:  # rewrite: same embedding inputs, new metadata
            self._buffer.extend(plan.rewritten())
            self._stale.extend(plan.stale)
            self.indexed += 1

    def _settle(self, item: _Embedding) -> bool:
        """Wait for a product's calls. True when it is settled (buffered or failed); False
        when it met a transient error and is tried again in a later round."""
        error: tuple[EmbedPart, CrossmodalSearchError] | None = None
        for part, fut in item.jobs.items():
            try:
                item.vectors[part] = fut.result()
            except _INPUT_ERRORS as exc:
                error = error if error is not None and _is_input(error[1]) else (part, exc)
            except ServiceError as exc:
                error = error or (part, exc)
        self._open.remove(item)
        if item.deferred_by is not None:
            self._deferred.remove(item)
            item.deferred_by = None
        pid = item.plan.product.product_id
        if error is None:
            self._buffer.extend(item.plan.records(item.vectors, self._weight))
            self._stale.extend(item.plan.stale)
            self.indexed += 1
            self._same_code = ("", 0)
            self._transient_in_row.clear()
            self._next_pause = self._policy.pause_seconds
            return True
        part, cause = error
        transient = isinstance(cause, RetryExhaustedError | TransientServiceError)
        if transient:
            with self._lock:
                fresh = item.epochs.get(part, self._epoch) == self._epoch
            if fresh:
                self._transient_in_row.add(pid)
            if len(self._transient_in_row) >= self._policy.storm_threshold:
                self._pause(cause)
            if item.rounds < self._policy.product_attempts:
                logger.info("%s met %s; trying it again later in this run", pid, _code(cause))
                item.deferred_by = (part, cause)
                self._deferred.append(item)
                return False
        self._fail(item, part, cause, transient=transient)
        return True

    def _fail(
        self,
        item: _Embedding,
        part: EmbedPart,
        exc: CrossmodalSearchError,
        *,
        transient: bool,
    ) -> None:
        failure = _failure(item.plan, part, exc)
        logger.info("not indexed: %s: %s", failure.product_id, failure.reason)
        self.failed.append(failure)
        code = failure.code
        if transient or _is_input(exc) or code is None:
            return
        # The same service error for product after product concerns the service, not them.
        last, count = self._same_code
        self._same_code = (code, count + 1 if code == last else 1)
        if self._same_code[1] >= self._policy.max_consecutive_failures:
            raise IngestStoppedError(
                f"{self._same_code[1]} products in a row failed with {code} ({exc}); it "
                "concerns every product, so the run stopped. What was embedded is written: "
                "fix the cause and rerun, indexed products are skipped.",
                report=self.report(0.0),
            ) from exc

    def _pause(self, exc: CrossmodalSearchError) -> None:
        """Hold every new call for a while: the service is throttling or failing."""
        self._transient_in_row.clear()
        pause = min(self._next_pause, self._policy.max_pause_seconds)
        if self._paused + pause > self._policy.pause_budget_seconds:
            raise IngestStoppedError(
                f"the service kept failing with {_code(exc)} through {self._paused:.0f} s of "
                "pauses, so the run stopped. What was embedded is written: rerun later, "
                "indexed products are skipped.",
                report=self.report(0.0),
            ) from exc
        logger.warning(
            "%s on %d products in a row: pausing new embedding calls for %.1f s",
            _code(exc),
            self._policy.storm_threshold,
            pause,
        )
        with self._lock:
            self._epoch += 1
        self._gate.clear()
        try:
            self._policy.sleep(pause)
        finally:
            self._gate.set()
        self._paused += pause
        self._next_pause = pause * 2

    def _put(self, records: list[VectorRecord]) -> None:
        try:
            self._store.put(records)
        except BaseException:
            self._store_failed = True
            raise
        self.written += len(records)

    def flush(self, *, final: bool) -> None:
        size = self._batch_size
        while len(self._buffer) >= self._flush_at or (final and self._buffer):
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            self._put(batch)
        if final or len(self._stale) >= size:
            while self._stale:
                batch_keys, self._stale = self._stale[:size], self._stale[size:]
                self._store.delete(batch_keys)
                self.deleted += len(batch_keys)

    def abort(self, pool: ThreadPoolExecutor) -> None:
        """Stop embedding; keep what was already embedded unless the store itself failed.

        Products whose calls all finished are written too: their embeddings were paid for.
        """
        self._gate.set()  # threads held by a pause must not hold up the shutdown
        for item in self._open:
            for fut in item.jobs.values():
                fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for item in list(self._open):
            jobs = item.jobs.values()
            if all(f.done() and not f.cancelled() and f.exception() is None for f in jobs):
                item.vectors.update((part, fut.result()) for part, fut in item.jobs.items())
                if not item.missing():
                    self._buffer.extend(item.plan.records(item.vectors, self._weight))
                    self._stale.extend(item.plan.stale)
                    self.indexed += 1
                    if item.deferred_by is not None:
                        self._deferred.remove(item)
        self._open.clear()
        # Products that met transient errors and were waiting for another round.
        self.failed.extend(
            _failure(item.plan, *item.deferred_by)
            for item in self._deferred
            if item.deferred_by is not None
        )
        self._deferred.clear()
        if self._store_failed or not self._buffer:
            return
        try:
            self.flush(final=True)
        except Exception:  # the original error is what the caller needs to see
            logger.warning("could not write embedded vectors while aborting", exc_info=True)

    def report(self, seconds: float) -> IngestReport:
        return IngestReport(
            indexed=self.indexed,
            skipped_unchanged=self.skipped,
            failed=list(self.failed),
            vectors_written=self.written,
            vectors_deleted=self.deleted,
            embed_calls=self._embed_calls,
            seconds=seconds,
            pruned=self.pruned,
        )


def _failure(plan: ProductPlan, part: EmbedPart, exc: CrossmodalSearchError) -> ItemFailure:
    photo = plan.image_of(part) if part != "text" else None
    where = f" (photo {photo})" if photo is not None and plan.extras else ""
    return ItemFailure(
        product_id=plan.product_id,
        kind="text" if part == "text" else "image",
        reason=f"{type(exc).__name__}: {exc}{where}",
        code=_code(exc),
        request_id=getattr(exc, "request_id", None),
        retryable=not _is_input(exc) or bool(getattr(exc, "retryable", False)),
    )


def _is_input(exc: BaseException) -> bool:
    return isinstance(exc, _INPUT_ERRORS)


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else None
