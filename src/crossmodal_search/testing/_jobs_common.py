"""What the fake of Bedrock's jobs shares between its async-invoke and batch halves.

:class:`~crossmodal_search.testing.FakeBedrockJobs` is built from :class:`JobsBase` (state,
S3 access, vectors and responses), the segmented-job half (``_segmented_fake``) and the batch
half (``_batch_fake``); each half reads and writes the state declared here.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from crossmodal_search._aws import parse_s3_uri
from crossmodal_search.testing._bedrock import ERROR_STATUS, FakeBedrock
from crossmodal_search.testing._wire import json_response

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse
    from mypy_boto3_s3 import S3Client

__all__ = ["EPOCH", "JobsBase"]

#: The time every job reports (the fake has no clock).
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


class JobsBase:
    """The state and helpers both halves of :class:`FakeBedrockJobs` use."""

    region_name: str
    account_id: str
    model_id: str
    requests: list[tuple[str, dict[str, Any]]]
    calls: Counter[str]
    _single: FakeBedrock
    _s3: S3Client | None
    _failures: deque[tuple[str | None, str, str]]
    _lock: threading.RLock

    def _s3_client(self) -> S3Client:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client(
                "s3",
                region_name=self.region_name,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._s3

    def _read(self, uri: str) -> bytes | None:
        from botocore.exceptions import ClientError

        bucket, key = parse_s3_uri(uri)
        try:
            data: bytes = self._s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None
        return data

    def _write(self, uri: str, data: bytes, content_type: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self._s3_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def _list(self, uri: str) -> list[str]:
        bucket, prefix = parse_s3_uri(uri)
        keys: list[str] = []
        for page in (
            self._s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix)
        ):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return [f"s3://{bucket}/{k}" for k in keys]

    def _vector(self, text: str, dim: int) -> list[float]:
        """The vector of ``text`` as the synchronous fake computes it, rounded as in a file."""
        return [round(float(x), 7) for x in self._single._text_vector(text, dim)]

    def _arn(self, kind: str, job_id: str) -> str:
        """The ARN of a job of ``kind`` (``async-invoke``, ``model-invocation-job``)."""
        return f"arn:aws:bedrock:{self.region_name}:{self.account_id}:{kind}/{job_id}"

    @staticmethod
    def _response(
        request: AWSPreparedRequest, status: int, payload: Mapping[str, Any], code: str | None
    ) -> AWSResponse:
        return json_response(request.url, status, payload, error_code=code)

    def _error(self, request: AWSPreparedRequest, code: str, message: str) -> AWSResponse:
        status = {"ConflictException": 400}.get(code, ERROR_STATUS.get(code, 400))
        return self._response(request, status, {"message": message}, code)
