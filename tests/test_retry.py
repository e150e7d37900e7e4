"""The single retry layer as seen through NovaEmbeddings: what is retried, how often, how long."""

from __future__ import annotations

import time

import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import (
    AccessDeniedError,
    ResourceNotFoundError,
    RetryExhaustedError,
    ServiceError,
    ServiceValidationError,
    TransientServiceError,
)
from crossmodal_search.testing import FakeBedrock
from tests.embeddings_helpers import fast_policy, nova

TRANSIENT = [
    "ThrottlingException",
    "ModelNotReadyException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelTimeoutException",
]
PERMANENT = [
    ("ValidationException", ServiceValidationError),
    ("ServiceQuotaExceededException", ServiceValidationError),
    ("AccessDeniedException", AccessDeniedError),
    ("ResourceNotFoundException", ResourceNotFoundError),
    ("ModelErrorException", ServiceError),
]


def test_two_throttles_then_success_returns_the_vector_after_three_calls() -> None:
    policy, sleep = fast_policy()
    emb, fake = nova(retry_policy=policy)
    fake.fail_next("ThrottlingException", times=2)
    vec = emb.embed_text("red summer dress")
    assert vec.shape == (1024,) and vec.dtype == np.float32
    assert fake.calls == 3 and emb.calls == 3
    assert fake.errors == {"ThrottlingException": 2}
    assert len(sleep.delays) == 2
    # the answer is the same vector an unthrottled call gives
    np.testing.assert_array_equal(vec, emb.embed_text("red summer dress"))


@pytest.mark.parametrize("code", TRANSIENT)
def test_each_transient_error_is_retried(code: str) -> None:
    emb, fake = nova()
    fake.fail_next(code)
    emb.embed_text("a")
    assert fake.calls == 2


@pytest.mark.parametrize(("code", "cls"), PERMANENT)
def test_permanent_errors_raise_after_exactly_one_call(code: str, cls: type[ServiceError]) -> None:
    policy, sleep = fast_policy()
    emb, fake = nova(retry_policy=policy)
    fake.fail_next(code, times=5)
    with pytest.raises(cls) as info:
        emb.embed_text("a")
    assert type(info.value) is cls
    assert not isinstance(info.value, TransientServiceError)
    assert info.value.code == code
    assert fake.calls == 1 and sleep.delays == []


def test_never_ending_throttle_stops_at_max_attempts() -> None:
    policy, sleep = fast_policy(max_attempts=4, initial_backoff=0.5, max_backoff=2.0)
    emb, fake = nova(retry_policy=policy)
    fake.fail_always("ThrottlingException")
    with pytest.raises(RetryExhaustedError) as info:
        emb.embed_text("a")
    err = info.value
    assert err.attempts == 4 and "4 attempts" in str(err)
    assert err.code == "ThrottlingException"
    assert isinstance(err.last_error, TransientServiceError)
    assert err.__cause__ is err.last_error
    assert fake.calls == 4
    assert len(sleep.delays) == 3
    assert all(0 <= d <= 2.0 for d in sleep.delays)


def test_never_ending_throttle_stops_at_the_time_bound() -> None:
    policy = RetryPolicy(
        max_attempts=1000, initial_backoff=0.01, max_backoff=0.02, max_total_seconds=0.2
    )
    emb, fake = nova(retry_policy=policy)
    fake.fail_always("ThrottlingException")
    start = time.monotonic()
    with pytest.raises(RetryExhaustedError) as info:
        emb.embed_text("a")
    elapsed = time.monotonic() - start
    # Unbounded, 1000 attempts would take ~20 s; the margin is for a loaded CI machine.
    assert elapsed < 5.0
    assert 2 <= info.value.attempts < 1000
    assert fake.calls == info.value.attempts


def test_sdk_built_client_does_not_multiply_retries(fake_credentials: None) -> None:
    policy, _ = fast_policy(max_attempts=3)
    emb = NovaEmbeddings(region_name="us-east-1", retry_policy=policy)
    fake = FakeBedrock()
    fake.attach(emb.client)
    fake.fail_always("ThrottlingException")
    with pytest.raises(RetryExhaustedError):
        emb.embed_text("a")
    # one HTTP request per attempt of our policy: botocore adds none of its own
    assert fake.calls == 3 == emb.calls


def test_network_errors_are_retried(fake_credentials: None) -> None:
    policy, _ = fast_policy(max_attempts=3)
    fake = FakeBedrock()
    client = fake.client()
    failures = {"left": 2}

    def drop(**_: object) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise EndpointConnectionError(endpoint_url="https://bedrock-runtime.example")

    # registered first so it runs before the fake answers
    client.meta.events.register_first("before-send.bedrock-runtime.InvokeModel", drop)
    vec = NovaEmbeddings(client=client, retry_policy=policy).embed_text("a")
    assert vec.shape == (1024,)
    assert fake.calls == 1 and failures["left"] == 0


def test_batch_retries_each_item_independently() -> None:
    emb, fake = nova(max_concurrency=4)
    fake.fail_next("ThrottlingException", times=3)
    out = emb.embed_texts([f"t{i}" for i in range(8)])
    assert out.shape == (8, 1024)
    assert fake.calls == 11 and fake.successes == 8


def test_fake_token_bucket_throttles_above_its_rate() -> None:
    fake = FakeBedrock(throttle_rate=2.0, throttle_burst=2)
    emb, _ = nova(fake, retry_policy=RetryPolicy(max_attempts=1))
    emb.embed_text("a")
    emb.embed_text("b")
    with pytest.raises(RetryExhaustedError):
        emb.embed_text("c")  # bucket empty: 429
    assert fake.errors == {"ThrottlingException": 1}
    time.sleep(0.55)  # refills one token at 2/s
    emb.embed_text("d")


def test_retries_absorb_fake_throttling() -> None:
    fake = FakeBedrock(throttle_rate=50.0, throttle_burst=1)
    policy = RetryPolicy(max_attempts=20, initial_backoff=0.01, max_backoff=0.05)
    emb, _ = nova(fake, retry_policy=policy, max_concurrency=4)
    out = emb.embed_texts([f"t{i}" for i in range(10)])
    assert out.shape == (10, 1024)
    assert fake.successes == 10
    assert fake.calls >= 10


def test_fake_latency_is_applied_per_call() -> None:
    fake = FakeBedrock(latency=0.05)
    emb, _ = nova(fake)
    start = time.monotonic()
    emb.embed_text("a")
    assert time.monotonic() - start >= 0.05
