"""What Nova's asynchronous jobs and Bedrock batch jobs share: clients, S3 files and polling."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from crossmodal_search._aws import (
    RetryPolicy,
    build_client,
    parse_s3_uri,
    poll_until_done,
    s3_list_keys,
    s3_read_bytes,
    s3_write_bytes,
)
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client


class _JobState(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def finished(self) -> bool: ...


StateT = TypeVar("StateT", bound=_JobState)
#: The job API's boto3 client (``BedrockRuntimeClient`` or ``BedrockClient``).
ClientT = TypeVar("ClientT")


def first_failures(lines: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` failure lines joined with ``"; "``, ``" ..."`` when there are more."""
    return "; ".join(lines[:limit]) + (" ..." if len(lines) > limit else "")


class JobRunner(Generic[ClientT]):
    """Base of the job classes: a job client, an S3 client for the job files, and polling.

    Args:
        service: the boto3 service of the job API (``bedrock-runtime`` or ``bedrock``).
        client, s3_client: injected clients; built with the SDK's config when ``None``.
        retry_policy: retries of each AWS call (the only retry layer).
        poll_interval, max_poll_interval, timeout: polling; waits double up to the cap.
        sleep, clock: injectable for tests.

    Raises:
        ConfigurationError: unless ``0 < poll_interval <= max_poll_interval`` and ``timeout > 0``.
    """

    def __init__(
        self,
        service: str,
        client: ClientT | None,
        s3_client: S3Client | None,
        *,
        session: boto3.Session | None,
        region_name: str | None,
        config: Config | None,
        retry_policy: RetryPolicy,
        poll_interval: float,
        max_poll_interval: float,
        timeout: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        if poll_interval <= 0 or max_poll_interval < poll_interval or timeout <= 0:
            raise ConfigurationError(
                "need 0 < poll_interval <= max_poll_interval and timeout > 0, got "
                f"{poll_interval}, {max_poll_interval}, {timeout}"
            )
        self._client: ClientT = client or build_client(
            service, session=session, region_name=region_name, config=config
        )
        self._s3: S3Client = s3_client or build_client(
            "s3", session=session, region_name=region_name, config=config
        )
        self.retry_policy = retry_policy
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock

    def _poll(
        self, fetch: Callable[[], StateT], *, what: str, job_id: str, timeout: float | None
    ) -> StateT:
        """``fetch()`` until the state is ``finished`` (default limit: ``self.timeout``)."""
        return poll_until_done(
            fetch,
            lambda s: s.finished,
            what=what,
            job_id=job_id,
            describe=lambda s: s.status,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            timeout=self.timeout if timeout is None else timeout,
            sleep=self._sleep,
            clock=self._clock,
        )

    def _read(self, uri: str) -> bytes:
        return s3_read_bytes(self._s3, uri, policy=self.retry_policy)

    def _write(self, uri: str, data: bytes, *, content_type: str) -> None:
        s3_write_bytes(self._s3, uri, data, content_type=content_type, policy=self.retry_policy)

    def _job_files(self, output_s3_uri: str, job_id: str) -> tuple[str, str, Iterator[str]]:
        """``(bucket, prefix, keys)`` of the job's folder under ``output_s3_uri``.

        The folder is ``<output>/<job id>/``; an ``output_s3_uri`` that already ends in the
        job id (as some service responses report it) is that folder itself.
        """
        bucket, key = parse_s3_uri(output_s3_uri)
        key = key.strip("/")
        if PurePosixPath(key).name == job_id:
            prefix = key + "/"
        else:
            prefix = f"{key}/{job_id}/" if key else f"{job_id}/"
        return bucket, prefix, s3_list_keys(self._s3, bucket, prefix, policy=self.retry_policy)
