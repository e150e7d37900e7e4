"""One asynchronous segmented embedding job (StartAsyncInvoke) on a short generated video.

Budget-gated (``LIVE_GATED``): it runs only when its cost bound fits in ``--live-budget-usd``.
Bedrock writes the result files into the run's S3 bucket, which the cleanup removes.
"""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal_search.embeddings import SegmentedEmbeddingJobs
from tests.integration import media
from tests.integration.env import LiveEnv
from tests.integration.lifecycle import Usage

pytestmark = pytest.mark.integration

LIVE_GATED = True
VIDEO_SECONDS = 3.0
SEGMENT_SECONDS = 1
LIVE_PLAN = Usage(
    nova_async_jobs=1,
    nova_video_seconds=VIDEO_SECONDS,
    s3_put_requests=10,  # the input, and the result files Bedrock writes
    s3_get_requests=20,
    s3_stored_bytes=300_000,
)


def test_a_segmented_video_job_yields_one_vector_per_segment(live: LiveEnv) -> None:
    data, seconds = media.mov(VIDEO_SECONDS)
    uri = live.upload("async/input/clip.mov", data, seconds=seconds)
    jobs = SegmentedEmbeddingJobs(
        live.bedrock_runtime,
        live.s3,
        dimension=256,
        poll_interval=5 if live.real else 0.01,
        timeout=900,
    )

    job = jobs.start_video(
        uri,
        output_s3_uri=f"s3://{live.run.media_bucket}/async/output/",
        segment_seconds=SEGMENT_SECONDS,
    )
    status = jobs.wait(job)
    result = jobs.fetch_results(job, status=status)

    spans = [(s.start, s.end) for s in result.segments]
    norms = [float(np.linalg.norm(s.vector)) for s in result.segments if s.vector is not None]
    live.report.record(
        "async_job",
        "video",
        {"status": result.status, "segments": spans, "norms": norms, "job_id": result.job_id},
    )
    assert result.ok, result.failed_segments or result.failed_outputs
    assert len(result.segments) == round(VIDEO_SECONDS / SEGMENT_SECONDS), spans
    assert all(s.vector is not None and s.vector.shape == (256,) for s in result.segments)
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(VIDEO_SECONDS, abs=0.5)
