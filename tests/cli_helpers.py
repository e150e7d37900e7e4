"""Fakes for CLI tests that reach AWS: boto3's default session answered at the HTTP boundary.

The CLI builds its AWS clients for ``--batch`` and ``--media-s3-uri`` from boto3's default
session (as ``boto3.client`` does). :func:`default_session_fakes` installs a default session
whose ``before-send`` events forward Bedrock requests to clients attached to ``FakeBedrockJobs``
(async and batch jobs) and ``FakeBedrock`` (synchronous InvokeModel); moto answers S3. botocore
serialises every request exactly as against AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
import pytest
from moto import mock_aws
from moto.core.models import botocore_stubber

from crossmodal_search.embeddings import OfflineEmbedder
from crossmodal_search.testing import FakeBedrock, FakeBedrockJobs

_JOB_OPERATIONS = {
    "bedrock": ("CreateModelInvocationJob", "GetModelInvocationJob", "StopModelInvocationJob"),
    "bedrock-runtime": ("StartAsyncInvoke", "GetAsyncInvoke"),
}


def _forward(client: Any) -> Callable[..., Any]:
    """A before-send handler answering from ``client``'s own (fake-attached) handlers."""

    def handler(request: Any, event_name: str, **kwargs: Any) -> Any:
        _, response = client.meta.events.emit_until_response(event_name, request=request)
        return response

    return handler


@dataclass
class AwsFakes:
    jobs: FakeBedrockJobs
    bedrock: FakeBedrock
    s3: Any

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@contextmanager
def default_session_fakes(
    monkeypatch: pytest.MonkeyPatch, *, dimension: int, buckets: tuple[str, ...]
) -> Iterator[AwsFakes]:
    """moto S3 with ``buckets``, and Bedrock fakes behind ``boto3.DEFAULT_SESSION``."""
    with mock_aws():
        core = botocore.session.get_session()
        # moto's handler comes with every session and answers every service (Bedrock jobs with
        # NotImplementedError): keep it for S3 only.
        core.unregister("before-send", botocore_stubber)  # type: ignore[arg-type]
        core.register("before-send.s3", botocore_stubber)  # type: ignore[arg-type]
        session = boto3.Session(botocore_session=core, region_name="us-east-1")
        s3 = session.client("s3")
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        jobs = FakeBedrockJobs(embedder=OfflineEmbedder(dimension=dimension), s3_client=s3)
        bedrock = FakeBedrock(embedder=OfflineEmbedder(dimension=dimension))
        for service, operations in _JOB_OPERATIONS.items():
            attached = jobs.client(service)
            for op in operations:
                core.register(f"before-send.{service}.{op}", _forward(attached))
        core.register("before-send.bedrock-runtime.InvokeModel", _forward(bedrock.client()))
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
        yield AwsFakes(jobs, bedrock, s3)
