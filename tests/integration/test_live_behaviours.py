"""Each undocumented S3 Vectors behaviour, asked of the real service and compared with our choice.

The table is ``tests/integration/behaviours.py``; what the service answered goes into
``integration-report.json`` whether or not it agrees. A disagreement fails with the file and
function to change: the fakes and the local store follow the service.
"""

from __future__ import annotations

import json

import pytest

from crossmodal_search.testing import FakeS3Vectors
from tests.integration.behaviours import (
    BEHAVIOURS,
    Behaviour,
    Get,
    LocalRunner,
    Put,
    Query,
    ServiceRunner,
    Step,
)
from tests.integration.behaviours import differences as compare
from tests.integration.env import LiveEnv
from tests.integration.lifecycle import Usage

pytestmark = pytest.mark.integration


def _plan() -> Usage:
    """Per behaviour: create/get/delete index, one request per step, every query over all puts."""
    total = Usage()
    for b in BEHAVIOURS:
        puts = [s for s in b.steps if isinstance(s, Put)]
        put_bytes = [
            len(json.dumps({"vectorBucketName": "x" * 63, "indexName": b.index_name}))
            + len(json.dumps({"vectors": [v.wire() for v in s.vectors]}))
            for s in puts
        ]
        queries = sum(isinstance(s, Query) for s in b.steps)
        gets = sum(isinstance(s, Get) for s in b.steps)
        total = total + Usage(
            s3v_put_requests=len(puts),
            s3v_put_bytes=sum(put_bytes),
            s3v_query_requests=queries,
            s3v_query_processed_bytes=queries * sum(put_bytes),
            s3v_other_requests=3 + gets,
        )
    return total


LIVE_PLAN = _plan()


def ours(behaviour: Behaviour) -> dict[str, list[Step]]:
    """What FakeS3Vectors and LocalVectorStore answer to the same script (in-process)."""
    fake = FakeS3Vectors().client()
    fake.create_vector_bucket(vectorBucketName="ours")
    out = {"FakeS3Vectors": ServiceRunner(fake, "ours").run(behaviour)}
    if behaviour.local:
        out["LocalVectorStore"] = LocalRunner().run(behaviour)
    return out


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=[b.id for b in BEHAVIOURS])
def test_service_matches_assumption(behaviour: Behaviour, live: LiveEnv) -> None:
    runner = ServiceRunner(live.s3vectors, live.run.vector_bucket, tags=live.run.tags)
    answered = runner.run(behaviour)
    found = compare(behaviour, answered)
    mine = ours(behaviour)
    live.report.behaviour(
        behaviour, answered, found, index_mode=runner.index_modes.get(behaviour.id), ours=mine
    )
    assert not found, (
        f"S3 Vectors in {live.region} answers {behaviour.title} differently from what we assume "
        f"({behaviour.assumption}): {found}; our implementations answer {mine}. Change "
        f"{behaviour.where} so FakeS3Vectors and LocalVectorStore follow the service, then the "
        "table in tests/integration/behaviours.py (python -m tests.integration.behaviours > "
        "the docs/testing.md table)."
    )
