"""Test helpers for code that uses crossmodal-search: fakes of AWS at the HTTP boundary.

They attach to real boto3 clients through botocore's ``before-send`` event, so botocore's
serialisation and parsing run as against AWS, with no network and no credentials needed.
"""

from crossmodal_search.testing._bedrock import FakeBedrock
from crossmodal_search.testing._bedrock_jobs import AsyncJobScript, BatchJobScript, FakeBedrockJobs
from crossmodal_search.testing._s3vectors import FakeS3Vectors

__all__ = [
    "AsyncJobScript",
    "BatchJobScript",
    "FakeBedrock",
    "FakeBedrockJobs",
    "FakeS3Vectors",
]
