"""The AWS boundary: client construction, error mapping and the single retry layer.

Every Bedrock and S3 Vectors call of the SDK goes through :func:`call_aws`, so that

* ``botocore`` errors are mapped to :mod:`crossmodal_search.errors` in one place, with the AWS
  request id kept and the original exception chained;
* retries happen exactly once, here, with tenacity. Clients the SDK builds itself get botocore's
  own retries set to a single attempt so the two layers never multiply. A client injected by the
  caller keeps its own configuration (docs/stores.md, "Your own boto3 clients").
* requests adapt to throttling: ``call_aws(..., limiter=...)`` holds a slot of an
  :class:`~crossmodal_search._limiter.AdaptiveLimiter` for each attempt (never during the
  backoff sleep), retries included. A throttling error (``ThrottlingException``,
  ``TooManyRequestsException``, HTTP 429) halves its concurrency limit (once per generation of
  requests) and teaches it the rate the service allows, at which it then paces every request;
  successes grow the limit back. Callers sharing a limiter (all threads of one
  :class:`~crossmodal_search.embeddings.NovaEmbeddings`) therefore settle on the rate the
  service accepts instead of retrying into a wall of 429s (like botocore's ``adaptive`` retry
  mode, but inside this one retry layer).
"""

from __future__ import annotations

import logging
import random
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

from crossmodal_search._limiter import AdaptiveLimiter as AdaptiveLimiter  # re-exported
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
        sleep: the sleep function; tests pass a recorder to run instantly. The adaptive limit
            of the client using this policy waits for its pace with it too.
        clock: monotonic seconds, the adaptive limit's clock (tests pass a manual clock).
    """

    max_attempts: int = 6
    initial_backoff: float = 0.25
    max_backoff: float = 20.0
    max_total_seconds: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_total_seconds < 0:
            raise ConfigurationError("RetryPolicy durations must be >= 0")


DEFAULT_RETRY_POLICY = RetryPolicy()


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


def _wait(
    policy: RetryPolicy, limiter: AdaptiveLimiter | None
) -> Callable[[tenacity.RetryCallState], float]:
    """Exponential backoff with full jitter, except for a throttle once ``limiter`` paces: the
    retry then waits for its turn in the pace like any request (one budget for both)."""
    backoff = tenacity.wait_random_exponential(
        multiplier=policy.initial_backoff, max=policy.max_backoff
    )

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if (
            limiter is not None
            and limiter.rate is not None
            and isinstance(exc, ServiceError)
            and _is_throttle(exc)
        ):
            return 0.0
        return float(backoff(state))

    return wait


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
        wait=_wait(policy, limiter),
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
