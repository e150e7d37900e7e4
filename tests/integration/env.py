"""What a live test receives: the ``live`` fixture's :class:`LiveEnv`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.integration.lifecycle import LiveRun, UsageMeter
from tests.integration.report import LiveReport

__all__ = ["LiveEnv"]


@dataclass
class LiveEnv:
    """What the live tests use: metered clients of one region, the run's buckets, the report."""

    mode: str
    region: str
    account_id: str
    run: LiveRun
    s3vectors: Any
    s3: Any
    bedrock_runtime: Any
    meter: UsageMeter
    report: LiveReport
    budget_usd: float
    fake_jobs: Any = None  # FakeBedrockJobs in rehearsal

    @property
    def real(self) -> bool:
        """True against AWS; False in a rehearsal on the fakes."""
        return self.mode == "live"

    def upload(self, key: str, data: bytes, *, seconds: float | None = None) -> str:
        """Put ``data`` in the run's S3 bucket; return its ``s3://`` URI."""
        self.s3.put_object(Bucket=self.run.media_bucket, Key=key, Body=data)
        uri = f"s3://{self.run.media_bucket}/{key}"
        if seconds is not None:
            self.meter.register_media(uri, seconds)
            if self.fake_jobs is not None:
                self.fake_jobs.add_media(uri, seconds)
        return uri
