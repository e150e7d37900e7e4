"""The AWS boundary: client construction, error mapping and the single retry layer.

Every Bedrock and S3 Vectors call of the SDK goes through :func:`call_aws`, so that

* ``botocore`` errors are mapped to :mod:`crossmodal_search.errors` in one place, with the AWS
  request id kept and the original exception chained;
* retries happen exactly once, here, with tenacity. Clients the SDK builds itself get botocore's
  own retries set to a single attempt so the two layers never multiply. A client injected by the
  caller keeps its own configuration (docs/stores.md, "Your own boto3 clients").
* concurrency adapts to throttling: :class:`AdaptiveLimiter` is an AIMD limit (like TCP's
  congestion window, or botocore's ``adaptive`` retry mode, but inside this one retry layer).
  ``call_aws(..., limiter=...)`` holds a slot of the limiter for each attempt (never during the
  backoff sleep); a throttling error (``ThrottlingException``, ``TooManyRequestsException``,
  HTTP 429) halves the limit, at most once per "generation" of requests (a throttle from a request
  started before the last decrease is ignored, so 20 concurrent 429s halve it once, not 20
  times), and every ``limit`` successes raise it by one, up to ``max_limit``. Callers sharing a
  limiter (all threads of one :class:`~crossmodal_search.embeddings.NovaEmbeddings`) therefore
  settle near the rate the service accepts instead of retrying into a wall of 429s.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tenacity
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
)

from crossmodal_search._version import __version__
from crossmodal_search.errors import (
    AccessDeniedError,
    ConfigurationError,
    InvalidInputError,
    JobTimeoutError,
    ResourceNotFoundError,
    RetryExhaustedError,
    ServiceError,
    ServiceValidationError,
    TransientServiceError,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")

#: Error codes worth retrying: Bedrock runtime (throttling, model warm-up, 5xx, model timeout)
#: and S3 Vectors (429, 5xx, 408). Validation and access errors are never retried.
TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "ThrottlingException",
        "ModelNotReadyException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        "TooManyRequestsException",
        "RequestTimeoutException",
    }
)
#: Error codes that mean "too many requests": they shrink an :class:`AdaptiveLimiter`.
THROTTLE_CODES: frozenset[str] = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "SlowDown"}
)
_ACCESS_CODES = frozenset({"AccessDeniedException", "UnrecognizedClientException"})
_NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NotFoundException"})
_VALIDATION_CODES = frozenset({"ValidationException", "ServiceQuotaExceededException"})
_NETWORK_ERRORS = (
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How throttled and transient AWS calls are retried (exponential backoff, full jitter).

    Attributes:
        max_attempts: total attempts including the first (default 6).
        initial_backoff: seconds of the first backoff window (default 0.25).
        max_backoff: cap of one backoff window in seconds (default 20).
        max_total_seconds: stop retrying once this much time has passed (default 120).
        sleep: the sleep function; tests pass a recorder to run instantly.
    """

    max_attempts: int = 6
    initial_backoff: float = 0.25
    max_backoff: float = 20.0
    max_total_seconds: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_total_seconds < 0:
            raise ConfigurationError("RetryPolicy durations must be >= 0")


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Permit:
    """One slot of an :class:`AdaptiveLimiter`; ``generation`` is the limit's at acquisition."""

    generation: int


class AdaptiveLimiter:
    """Thread-safe AIMD concurrency limit shared by every caller of one client.

    Args:
        max_limit: the ceiling (the caller's ``max_concurrency``).
        initial_limit: where the limit starts (default ``max_limit``).
        decrease_factor: the limit is multiplied by this on throttling (default 0.5).

    The limit never drops below 1. A throttle reported for a :class:`Permit` acquired before the
    last decrease is ignored: those requests were sent under the old, higher limit, and one
    decrease already answered them.

    Example:
        >>> limiter = AdaptiveLimiter(32)
        >>> with limiter.slot() as permit:
        ...     limiter.on_throttle(permit)
        >>> limiter.limit
        16
    """

    def __init__(
        self, max_limit: int, *, initial_limit: int | None = None, decrease_factor: float = 0.5
    ) -> None:
        if isinstance(max_limit, bool) or not isinstance(max_limit, int) or max_limit < 1:
            raise ConfigurationError(f"max_limit must be an int >= 1, got {max_limit!r}")
        start = max_limit if initial_limit is None else initial_limit
        if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= max_limit:
            raise ConfigurationError(f"initial_limit must be in [1, {max_limit}], got {start!r}")
        if not 0 < decrease_factor < 1:
            raise ConfigurationError(f"decrease_factor must be in (0, 1), got {decrease_factor!r}")
        self._max = max_limit
        self._limit = start
        self._factor = decrease_factor
        self._in_flight = 0
        self._generation = 0
        self._successes = 0
        self._throttles = 0
        self._cond = threading.Condition()

    @property
    def max_limit(self) -> int:
        """The ceiling of :attr:`limit`."""
        return self._max

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        with self._cond:
            return self._limit

    @property
    def in_flight(self) -> int:
        """Permits currently held."""
        with self._cond:
            return self._in_flight

    @property
    def throttles(self) -> int:
        """Throttling errors reported (decreases or not)."""
        with self._cond:
            return self._throttles

    def acquire(self) -> Permit:
        """Block until fewer than :attr:`limit` permits are held, then take one."""
        with self._cond:
            while self._in_flight >= self._limit:
                self._cond.wait()
            self._in_flight += 1
            return Permit(self._generation)

    def release(self, permit: Permit) -> None:
        """Give back a permit from :meth:`acquire`."""
        del permit  # the generation only matters for on_throttle
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    @contextmanager
    def slot(self) -> Iterator[Permit]:
        """``with limiter.slot() as permit:`` acquire and always release."""
        permit = self.acquire()
        try:
            yield permit
        finally:
            self.release(permit)

    def on_throttle(self, permit: Permit) -> None:
        """Multiplicative decrease, once per generation of permits."""
        with self._cond:
            self._throttles += 1
            self._successes = 0
            if permit.generation != self._generation:
                return
            new = max(1, int(self._limit * self._factor))
            if new != self._limit:
                logger.info("throttled: concurrency limit %d -> %d", self._limit, new)
            self._limit = new
            self._generation += 1

    def on_success(self) -> None:
        """Additive increase: +1 after ``limit`` successes in a row, up to ``max_limit``."""
        with self._cond:
            if self._limit >= self._max:
                return
            self._successes += 1
            if self._successes >= self._limit:
                self._successes = 0
                self._limit += 1
                self._cond.notify()

    def __repr__(self) -> str:
        return f"AdaptiveLimiter(limit={self.limit}, max_limit={self._max})"


def _is_throttle(exc: ServiceError) -> bool:
    return exc.code in THROTTLE_CODES or exc.status_code == 429


def sdk_config(config: Config | None = None) -> Config:
    """botocore Config for clients the SDK builds: one attempt (we retry), user agent tagged."""
    ours = Config(
        # total_max_attempts counts the first request too; max_attempts would allow one retry.
        retries={"total_max_attempts": 1, "mode": "standard"},
        user_agent_extra=f"crossmodal-search/{__version__}",
    )
    return config.merge(ours) if config is not None else ours


def build_client(
    service: str,
    *,
    session: boto3.Session | None = None,
    region_name: str | None = None,
    config: Config | None = None,
) -> Any:
    """Build a boto3 client with :func:`sdk_config`. Imported lazily: nothing at import time.

    Without ``session`` it uses boto3's default session, as ``boto3.client`` does, so
    ``boto3.setup_default_session(profile_name=...)`` applies to the SDK too.

    Raises:
        ConfigurationError: No region is given or configured (botocore's ``NoRegionError``).
    """
    import boto3

    if session is None and boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    sess = cast("boto3.Session", session or boto3.DEFAULT_SESSION)
    try:
        return sess.client(service, region_name=region_name, config=sdk_config(config))  # type: ignore[call-overload]
    except NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region: pass region_name= (CLI: --region) or set AWS_DEFAULT_REGION"
        ) from exc


def _error_class(code: str, status: int | None) -> type[ServiceError]:
    if code in TRANSIENT_CODES or (status is not None and status >= 500):
        return TransientServiceError
    if code in _ACCESS_CODES or status == 403:
        return AccessDeniedError
    if code in _NOT_FOUND_CODES or status == 404:
        return ResourceNotFoundError
    if code in _VALIDATION_CODES or status == 400:
        return ServiceValidationError
    return ServiceError


def translate(exc: BaseException, operation: str) -> ServiceError | None:
    """Map a botocore exception to our error tree, or None if it is not an AWS error."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(err.get("Code", "Unknown"))
        status = meta.get("HTTPStatusCode")
        request_id = meta.get("RequestId")
        message = str(err.get("Message", "")) or str(exc)
        cls = _error_class(code, status)
        return cls(
            f"{operation} failed: {code}: {message}",
            code=code,
            request_id=request_id,
            status_code=status,
            operation=operation,
        )
    if isinstance(exc, _NETWORK_ERRORS):
        return TransientServiceError(
            f"{operation} failed: {type(exc).__name__}: {exc}",
            code=type(exc).__name__,
            operation=operation,
        )
    if isinstance(exc, NoCredentialsError):
        return AccessDeniedError(
            f"{operation} failed: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID, "
            "or use the offline embedder and local store)",
            code="NoCredentials",
            operation=operation,
        )
    if isinstance(exc, ParamValidationError):
        return ServiceValidationError(
            f"{operation} failed botocore parameter validation: {exc}",
            code="ParamValidationError",
            operation=operation,
        )
    return None


@contextmanager
def map_client_errors(operation: str) -> Iterator[None]:
    """Translate botocore errors raised in the block into our tree (``raise ... from exc``)."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as exc:
        mapped = translate(exc, operation)
        if mapped is None:
            raise
        raise mapped from exc


def call_aws(
    operation: str,
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    limiter: AdaptiveLimiter | None = None,
) -> T:
    """Call ``fn`` (one AWS request) with error mapping and the retry policy.

    With ``limiter``, each attempt holds one of its slots (released before any backoff sleep),
    throttling errors shrink it and successes grow it back.

    Raises:
        RetryExhaustedError: a transient error persisted for ``policy.max_attempts`` attempts or
            ``policy.max_total_seconds``.
        ServiceError: any non-transient AWS error, on the first attempt.
    """

    def once() -> T:
        if limiter is None:
            with map_client_errors(operation):
                return fn()
        with limiter.slot() as permit:
            try:
                with map_client_errors(operation):
                    result = fn()
            except ServiceError as exc:
                if _is_throttle(exc):
                    limiter.on_throttle(permit)
                raise
            limiter.on_success()
            return result

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.info(
            "%s: transient error (%s), attempt %d of %d, backing off %.2fs",
            operation,
            getattr(exc, "code", type(exc).__name__),
            state.attempt_number,
            policy.max_attempts,
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientServiceError),
        wait=tenacity.wait_random_exponential(
            multiplier=policy.initial_backoff, max=policy.max_backoff
        ),
        stop=(
            tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_after_delay(policy.max_total_seconds)
        ),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
        return retrying(once)
    except tenacity.RetryError as exc:
        attempts = exc.last_attempt.attempt_number
        last = exc.last_attempt.exception()
        assert isinstance(last, ServiceError)  # only TransientServiceError is retried
        raise RetryExhaustedError(
            f"{operation} still failing after {attempts} attempts: {last}",
            attempts=attempts,
            last_error=last,
        ) from last


# --- S3 objects (asynchronous and batch jobs read and write their files here) ---------------


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``; the key may be empty."""
    if not uri.startswith("s3://"):
        raise InvalidInputError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise InvalidInputError(f"s3 URI has no bucket: {uri!r}")
    return bucket, key


def join_s3(base: str, *parts: str) -> str:
    """``join_s3("s3://b/out/", "job", "f.json") == "s3://b/out/job/f.json"``."""
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def s3_read_bytes(s3_client: S3Client, uri: str, *, policy: RetryPolicy) -> bytes:
    """Read one S3 object (through :func:`call_aws`)."""
    bucket, key = parse_s3_uri(uri)

    def get() -> bytes:
        body: bytes = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    return call_aws("s3:GetObject", get, policy=policy)


def s3_write_bytes(
    s3_client: S3Client, uri: str, data: bytes, *, content_type: str, policy: RetryPolicy
) -> None:
    """Write one S3 object (through :func:`call_aws`)."""
    bucket, key = parse_s3_uri(uri)
    call_aws(
        "s3:PutObject",
        lambda: s3_client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type),
        policy=policy,
    )


def s3_list_keys(
    s3_client: S3Client, bucket: str, prefix: str, *, policy: RetryPolicy
) -> Iterator[str]:
    """Every key under ``prefix`` (paginated ``list_objects_v2``)."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = call_aws(
            "s3:ListObjectsV2", partial(s3_client.list_objects_v2, **kwargs), policy=policy
        )
        for obj in page.get("Contents", []):
            yield str(obj["Key"])
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")


# --- polling long-running jobs (not a retry layer: each status call goes through call_aws) ---


def poll_until_done(
    fetch: Callable[[], S],
    done: Callable[[S], bool],
    *,
    what: str,
    job_id: str,
    describe: Callable[[S], str],
    poll_interval: float,
    max_poll_interval: float,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> S:
    """Call ``fetch`` until ``done(state)``; waits grow x2 up to ``max_poll_interval``, jittered.

    Raises:
        JobTimeoutError: not done after ``timeout`` seconds of ``clock``.
    """
    start = clock()
    delay = poll_interval
    polls = 0
    while True:
        state = fetch()
        polls += 1
        if done(state):
            return state
        elapsed = clock() - start
        remaining = timeout - elapsed
        if remaining <= 0:
            raise JobTimeoutError(
                f"{what} {job_id} not finished after {elapsed:.0f}s ({polls} polls, last status "
                f"{describe(state)}); it keeps running in AWS: wait again or fetch later",
                job_id=job_id,
                status=describe(state),
            )
        # "Equal jitter": at least half the window, so polls never bunch up at zero.
        window = min(delay, max_poll_interval)
        pause = min(random.uniform(window / 2, window), remaining)
        logger.debug("%s %s is %s; next poll in %.1fs", what, job_id, describe(state), pause)
        sleep(pause)
        delay = min(delay * 2, max_poll_interval)
