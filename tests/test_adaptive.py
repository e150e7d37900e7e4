"""The adaptive (AIMD) concurrency limit: the limiter, call_aws wiring, throttled ingestion."""

from __future__ import annotations

import heapq
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from crossmodal_search._aws import AdaptiveLimiter, RetryPolicy, call_aws
from crossmodal_search._limiter import Permit
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import (
    ConfigurationError,
    RetryExhaustedError,
    ServiceValidationError,
)
from crossmodal_search.search import CrossmodalSearcher, Product
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.stores._s3vectors import S3VectorsStore
from crossmodal_search.testing import FakeBedrock, FakeS3Vectors

DIM = 256
# Fast backoff so throttled runs stay well under a second; the attempts are the default ones.
FAST = RetryPolicy(initial_backoff=0.005, max_backoff=0.05)


# --- the limiter ------------------------------------------------------------------------------


def test_a_chosen_start_halves_on_throttle() -> None:
    limiter = AdaptiveLimiter(32, initial_limit=32)
    assert limiter.limit == 32
    limiter.on_throttle(limiter.acquire())
    assert limiter.limit == 16


def test_slow_start_grows_a_third_per_round_trip_until_the_first_throttle() -> None:
    limiter = AdaptiveLimiter(32)
    assert limiter.limit == AdaptiveLimiter.SLOW_START == 4
    for _ in range(3 * 8):  # one more per three successes: 4 -> 12
        limiter.on_success()
    assert limiter.limit == 12
    # Leaving slow start: the burst paid the last round, a quarter of it is what is safe.
    limiter.on_throttle(limiter.acquire())
    assert limiter.limit == 3
    for _ in range(3):  # then additive: one more per `limit` successes
        limiter.on_success()
    assert limiter.limit == 4
    for _ in range(3):
        limiter.on_success()
    assert limiter.limit == 4


def test_concurrent_throttles_of_one_generation_decrease_once() -> None:
    limiter = AdaptiveLimiter(32, initial_limit=32)
    permits = [limiter.acquire() for _ in range(20)]
    for p in permits:
        limiter.on_throttle(p)
        limiter.release(p)
    assert limiter.limit == 16
    assert limiter.throttles == 20
    # A request sent under the new limit and throttled again halves it again.
    with limiter.slot() as later:
        limiter.on_throttle(later)
    assert limiter.limit == 8


def test_limit_never_drops_below_one() -> None:
    limiter = AdaptiveLimiter(8)
    for _ in range(10):
        with limiter.slot() as p:
            limiter.on_throttle(p)
    assert limiter.limit == 1
    with limiter.slot():  # still usable
        assert limiter.in_flight == 1


def test_successes_grow_the_limit_back_to_the_ceiling_and_no_further() -> None:
    limiter = AdaptiveLimiter(6, initial_limit=2)
    limiter.on_success()
    assert limiter.limit == 2  # +1 per `limit` successes
    limiter.on_success()
    assert limiter.limit == 3
    for _ in range(100):
        limiter.on_success()
    assert limiter.limit == 6


def test_a_throttle_restarts_the_success_count() -> None:
    limiter = AdaptiveLimiter(8, initial_limit=4)
    for _ in range(3):
        limiter.on_success()
    with limiter.slot() as p:
        limiter.on_throttle(p)
    assert limiter.limit == 2
    limiter.on_success()
    assert limiter.limit == 2
    limiter.on_success()
    assert limiter.limit == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_limit": 0},
        {"max_limit": True},
        {"max_limit": 4, "initial_limit": 5},
        {"max_limit": 4, "initial_limit": 0},
        {"max_limit": 4, "decrease_factor": 1.0},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        AdaptiveLimiter(**kwargs)  # type: ignore[arg-type]


def test_threads_never_hold_more_permits_than_the_limit() -> None:
    limiter = AdaptiveLimiter(8)
    lock = threading.Lock()
    holding = 0
    worst_excess = 0

    def work(i: int) -> None:
        nonlocal holding, worst_excess
        with limiter.slot() as permit:
            with lock:
                holding += 1
                worst_excess = max(worst_excess, holding - max(limiter.limit, 0))
            time.sleep(0.0005)
            if i % 7 == 0:
                limiter.on_throttle(permit)
            else:
                limiter.on_success()
            with lock:
                holding -= 1

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(work, range(400)))
    assert limiter.in_flight == 0
    assert holding == 0
    # Permits taken before a decrease may outlive it, but never more than the old limit allowed.
    assert worst_excess <= 8
    assert 1 <= limiter.limit <= 8


def test_threads_block_at_the_limit() -> None:
    limiter = AdaptiveLimiter(2)
    a, b = limiter.acquire(), limiter.acquire()
    got = threading.Event()

    def third() -> None:
        with limiter.slot():
            got.set()

    t = threading.Thread(target=third)
    t.start()
    assert not got.wait(0.05)
    limiter.release(a)
    assert got.wait(2)
    t.join()
    limiter.release(b)
    assert limiter.in_flight == 0


# --- the learned rate (a manual clock: no wall time, no threads) -------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Bucket:
    """The service: a token bucket of ``rate`` per second and ``burst`` capacity."""

    def __init__(self, clock: ManualClock, rate: float, burst: float) -> None:
        self.clock, self.rate, self.tokens, self.stamp = clock, rate, burst, clock()
        self.burst = burst

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _drive(limiter: AdaptiveLimiter, bucket: Bucket, clock: ManualClock, n: int) -> int:
    """``n`` requests one after another, 1 ms of work apart; returns how many were throttled."""
    throttled = 0
    for _ in range(n):
        with limiter.slot() as permit:
            if bucket.take():
                limiter.on_success()
            else:
                limiter.on_throttle(permit)
                throttled += 1
        clock.sleep(0.001)
    return throttled


@pytest.mark.parametrize(("rate", "burst"), [(50.0, 50.0), (40.0, 1.0), (7.0, 20.0)])
def test_the_limiter_learns_the_rate_the_service_allows_and_stops_being_throttled(
    rate: float, burst: float
) -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(32, clock=clock, sleep=clock.sleep)
    bucket = Bucket(clock, rate, burst)
    _drive(limiter, bucket, clock, 1000)  # 1,000 requests a second: throttled until it learns
    learned = limiter.rate
    assert learned is not None
    assert limiter.limit == 32  # the pace limits now, not the concurrency

    start, before = clock(), bucket.tokens
    sent = int(20 * rate)  # about 20 s more
    throttled = _drive(limiter, bucket, clock, sent)
    assert throttled <= 5  # a probe above the rate now and then, no more
    # ... while using at least 95 % of what the service allows
    assert sent - throttled >= 0.95 * (rate * (clock() - start) + before)
    final = limiter.rate
    assert final is not None and 0.95 * rate <= final <= 1.05 * rate


def _concurrent(limiter: AdaptiveLimiter, bucket: Bucket, clock: ManualClock, n: int) -> int:
    """``n`` requests answered ``LATENCY`` after they are sent, as many in flight as the limiter
    allows (0.5 ms of client work per send); returns how many were throttled."""
    throttled, done, seq = 0, 0, 0
    answers: list[tuple[float, int, Permit, bool]] = []
    while done < n:
        while limiter.in_flight < limiter.limit and done + limiter.in_flight < n:
            permit = limiter.acquire()  # may sleep (the manual clock) for the pace
            seq += 1
            heapq.heappush(answers, (clock() + LATENCY, seq, permit, bucket.take()))
            clock.sleep(0.0005)
        at, _, permit, ok = heapq.heappop(answers)
        clock.now = max(clock.now, at)
        if ok:
            limiter.on_success()
            done += 1
        else:
            limiter.on_throttle(permit)
            throttled += 1
        limiter.release(permit)
    return throttled


LATENCY = 0.08


@pytest.mark.parametrize("requests", [600, 2000])
def test_a_throttled_start_wastes_few_requests_and_uses_the_quota(requests: int) -> None:
    # The ingest benchmark's throttle: 40 requests/s with a burst of 40, 80 ms per request.
    clock = ManualClock()
    limiter = AdaptiveLimiter(32, clock=clock, sleep=clock.sleep)
    throttled = _concurrent(limiter, Bucket(clock, 40.0, 40.0), clock, requests)
    # At most the benchmark's 2.05 calls per product (two per product), nearly all of them in
    # the round trip the burst runs out in.
    assert throttled <= 0.05 * 600
    ideal = (requests - 40) / 40.0  # the burst, then the refill
    assert clock() <= 1.06 * ideal + LATENCY

    # Starting at the ceiling, 32 requests are in flight when the burst runs out.
    clock = ManualClock()
    eager = AdaptiveLimiter(32, initial_limit=32, clock=clock, sleep=clock.sleep)
    assert _concurrent(eager, Bucket(clock, 40.0, 40.0), clock, requests) > throttled + 5


def test_slow_start_costs_a_few_round_trips_when_nothing_throttles() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(32, clock=clock, sleep=clock.sleep)
    assert _concurrent(limiter, Bucket(clock, 1e9, 1e9), clock, 2000) == 0
    slow = clock()
    clock = ManualClock()
    eager = AdaptiveLimiter(32, initial_limit=32, clock=clock, sleep=clock.sleep)
    _concurrent(eager, Bucket(clock, 1e9, 1e9), clock, 2000)
    assert limiter.limit == 32
    assert slow - clock() <= 5 * LATENCY


def test_a_throttle_long_after_the_last_starts_learning_afresh() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(8, initial_limit=8, clock=clock, sleep=clock.sleep)
    with limiter.slot() as p:
        limiter.on_throttle(p)
    clock.sleep(AdaptiveLimiter.HORIZON + 1)
    with limiter.slot() as p:
        limiter.on_throttle(p)
    assert limiter.rate is None  # two throttles 31 s apart say nothing about the rate
    assert limiter.limit == 2  # each halved the concurrency limit


# --- call_aws with a limiter -------------------------------------------------------------------


def _invoke(client: object) -> object:
    return client.invoke_model(  # type: ignore[attr-defined]
        modelId="amazon.nova-2-multimodal-embeddings-v1:0",
        body=(
            '{"taskType":"SINGLE_EMBEDDING","singleEmbeddingParams":{"embeddingPurpose":'
            '"GENERIC_INDEX","embeddingDimension":256,"text":{"truncationMode":"END","value":"x"}}}'
        ),
        contentType="application/json",
        accept="application/json",
    )


def test_call_aws_reports_throttles_and_sleeps_without_a_slot() -> None:
    fake = FakeBedrock()
    client = fake.client()
    limiter = AdaptiveLimiter(8, initial_limit=8)
    held_while_sleeping: list[int] = []
    policy = RetryPolicy(sleep=lambda _s: held_while_sleeping.append(limiter.in_flight))
    fake.fail_next("ThrottlingException", times=2)
    call_aws("InvokeModel", lambda: _invoke(client), policy=policy, limiter=limiter)
    assert held_while_sleeping == [0, 0]
    assert limiter.throttles == 2
    assert limiter.limit == 2  # two throttles, each from a request sent after the last decrease
    assert limiter.in_flight == 0
    assert fake.errors == {"ThrottlingException": 2}


def test_non_throttling_errors_leave_the_limit_alone() -> None:
    fake = FakeBedrock()
    client = fake.client()
    limiter = AdaptiveLimiter(8, initial_limit=8)
    fake.fail_next("ServiceUnavailableException")
    call_aws("InvokeModel", lambda: _invoke(client), policy=FAST, limiter=limiter)
    fake.fail_next("ValidationException")
    with pytest.raises(ServiceValidationError):
        call_aws("InvokeModel", lambda: _invoke(client), policy=FAST, limiter=limiter)
    assert limiter.limit == 8
    assert limiter.throttles == 0
    assert limiter.in_flight == 0


# --- NovaEmbeddings and the searcher ----------------------------------------------------------


def _products(n: int) -> list[Product]:
    return [Product(product_id=f"p{i}", text=f"product number {i}") for i in range(n)]


def test_defaults_are_32_with_a_shared_adaptive_limit() -> None:
    fake = FakeBedrock()
    emb = NovaEmbeddings(client=fake.client(), dimension=DIM)
    assert emb.max_concurrency == 32
    assert emb.limiter.max_limit == 32
    searcher = CrossmodalSearcher(emb, LocalVectorStore(dimension=DIM))
    assert searcher.max_concurrency == 32


def test_in_flight_requests_never_exceed_the_embedder_limit() -> None:
    fake = FakeBedrock(latency=0.002, record_requests=False)
    emb = NovaEmbeddings(client=fake.client(), dimension=DIM, max_concurrency=3)
    searcher = CrossmodalSearcher(emb, LocalVectorStore(dimension=DIM), max_concurrency=16)
    report = searcher.index(_products(60))
    assert report.indexed == 60
    assert fake.max_in_flight == 3


def test_indexing_embeds_after_one_store_read_and_ends_with_a_short_write() -> None:
    s3 = FakeS3Vectors()
    s3.client().create_vector_bucket(vectorBucketName="vectors")
    S3VectorsStore("vectors", "products", client=s3.client(), dimension=DIM)
    # Opened, not created: the store cannot know the index is empty, so it is read.
    store = S3VectorsStore("vectors", "products", client=s3.client())
    emb = NovaEmbeddings(client=FakeBedrock(record_requests=False).client(), dimension=DIM)
    report = CrossmodalSearcher(emb, store).index(_products(300))  # text and combined vectors
    assert report.indexed == 300
    # The first window (max_concurrency products) is planned alone, in one GetVectors request.
    first = s3.operation_requests("get_vectors")[0]
    assert {k.split("-", 1)[1] for k in first.params["keys"]} == {f"p{i}" for i in range(32)}
    # Windows double (32, 64, 128, then the last 76 products): the last one's records go out
    # 100 at a time while it embeds, so the write that ends the run is short.
    puts = [len(r.params["vectors"]) for r in s3.operation_requests("put_vectors")]
    assert sum(puts) == 600
    assert puts[0] >= 2 * 224  # what the windows before the last buffered
    assert puts[-1] <= 100


def test_a_first_ingestion_into_an_index_the_store_created_starts_without_reads() -> None:
    s3 = FakeS3Vectors()
    store = S3VectorsStore("vectors", "products", client=s3.client(), dimension=DIM)
    emb = NovaEmbeddings(client=FakeBedrock(record_requests=False).client(), dimension=DIM)
    searcher = CrossmodalSearcher(emb, store)

    assert searcher.index(_products(100)).indexed == 100
    # Every window was planned before the first write: the index was empty, nothing was read.
    assert s3.calls["get_vectors"] == 0
    # The store has written since: the next run reads what is stored and skips it all.
    again = searcher.index(_products(100))
    assert (again.indexed, again.skipped_unchanged) == (0, 100)
    assert s3.calls["get_vectors"] > 0


def _throttled_fake() -> FakeBedrock:
    return FakeBedrock(latency=0.002, throttle_rate=400, throttle_burst=4, record_requests=False)


def test_throttled_ingestion_with_defaults_loses_nothing_and_backs_off() -> None:
    fake = _throttled_fake()
    # The default six attempts, compressed in time: at ~1/3 of attempts throttled, six in a row
    # for one of 150 products has a ~0.3 % chance per run; twelve make a give-up vanishingly rare.
    patient = RetryPolicy(initial_backoff=0.005, max_backoff=0.05, max_attempts=12)
    emb = NovaEmbeddings(client=fake.client(), dimension=DIM, retry_policy=patient)
    report = CrossmodalSearcher(emb, LocalVectorStore(dimension=DIM)).index(_products(150))
    assert report.failed == []
    assert report.indexed == 150
    assert fake.successes == 150
    assert fake.errors.get("ThrottlingException", 0) > 0  # the throttle did bite
    # and the limiter reacted: it paces at the rate it learned, or (not enough throttles yet
    # to learn one) its concurrency limit came down
    rate = emb.limiter.rate
    assert (rate is not None and rate < 32 / 0.002) or emb.limiter.limit < 32

    # The same 150 requests from 32 threads through call_aws without a limiter (some may give
    # up: RetryExhaustedError is what the limiter prevents).
    bare = _throttled_fake()
    client = bare.client()

    def one(_i: int) -> bool:
        try:
            call_aws("InvokeModel", lambda: _invoke(client), policy=FAST)
        except RetryExhaustedError:
            return False
        return True

    with ThreadPoolExecutor(32) as pool:
        done = sum(pool.map(one, range(150)))
    assert bare.successes == done
    limited_throttles = fake.errors.get("ThrottlingException", 0)
    assert limited_throttles < bare.errors.get("ThrottlingException", 0)
