"""The table of undocumented S3 Vectors behaviours, run offline on our two implementations.

``tests/integration/behaviours.py`` states what we assume for each behaviour AWS does not
document; the live suite checks the real service against it. Here FakeS3Vectors (through a real
boto3 client, so botocore's serialisation runs) and LocalVectorStore must both do exactly what
the table says, and docs/testing.md must show the table as it is.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from crossmodal_search.testing import FakeS3Vectors
from tests.integration.behaviours import (
    BEHAVIOURS,
    Behaviour,
    LocalRunner,
    ServiceRunner,
    differences,
    markdown_table,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
IDS = [b.id for b in BEHAVIOURS]


@pytest.fixture
def fake_runner() -> ServiceRunner:
    fake = FakeS3Vectors()
    client = fake.client()
    client.create_vector_bucket(vectorBucketName="pinned")
    return ServiceRunner(client, "pinned", tags={"crossmodal-live-test": "offline"})


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=IDS)
def test_fake_s3vectors_does_what_we_assume(
    behaviour: Behaviour, fake_runner: ServiceRunner
) -> None:
    observed = fake_runner.run(behaviour)
    assert differences(behaviour, observed) == [], behaviour.where
    # The index is removed again: nothing of one behaviour leaks into the next.
    assert fake_runner.client.list_indexes(vectorBucketName="pinned")["indexes"] == []


@pytest.mark.parametrize("behaviour", [b for b in BEHAVIOURS if b.local], ids=lambda b: b.id)
def test_local_store_does_what_we_assume(behaviour: Behaviour) -> None:
    assert differences(behaviour, LocalRunner().run(behaviour)) == [], behaviour.where


def test_the_table_is_well_formed() -> None:
    assert len(set(IDS)) == len(IDS)
    for b in BEHAVIOURS:
        assert len(b.steps) == len(b.expected), b.id
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", b.index_name), b.id
        for path in re.findall(r"src/\S+\.py", b.where):
            assert (DOCS.parent.parent / path).is_file(), (b.id, path)
    # Only the wire-addressing behaviour is meaningless for the local store.
    assert [b.id for b in BEHAVIOURS if not b.local] == ["index_arn_with_bucket_name"]


def test_a_different_answer_is_reported_step_by_step() -> None:
    """The comparison can fail: an answer other than the assumption names the step."""
    by_id = {b.id: b for b in BEHAVIOURS}
    ne = by_id["ne_on_missing_field"]
    assert differences(ne, [{"ok": True}, {"keys": ["b"]}]) == [
        "step 2 (Query): {'keys': ['b']} != {'keys': ['b', 'c']}"
    ]
    big = by_id["integer_beyond_2_53_round_trips"]
    rounded = {"keys": ["a"], "metadata": {"a": {"n": 2**53}}, "data": {"a": [1.0, 0, 0, 0]}}
    assert len(differences(big, [{"ok": True}, rounded])) == 1
    l2 = by_id["euclidean_is_plain_l2"]
    squared = {"keys": ["b", "a"], "distances": [1.0, 25.0]}
    assert len(differences(l2, [{"ok": True}, squared])) == 1
    # A rejection is a rejection whatever the error code; an acceptance is not.
    nan = by_id["nan_in_metadata"]
    empty: dict[str, object] = {"keys": [], "metadata": {}, "data": {}}
    assert differences(nan, [{"rejected": True, "code": "ValidationException"}, empty]) == []
    assert len(differences(nan, [{"ok": True}, empty])) == 1
    # Distances agree within the behaviour's tolerance only.
    cos = by_id["cosine_distance_of_identical_vectors"]
    near = {"keys": ["a", "b"], "distances": [5e-7, 1.0]}
    assert differences(cos, [{"ok": True}, near]) == []
    assert differences(dataclasses.replace(cos, tolerance=1e-9), [{"ok": True}, near]) != []


def test_docs_list_every_behaviour_as_the_table_says() -> None:
    text = DOCS.read_text(encoding="utf-8")
    start, end = "<!-- behaviours:start -->\n", "<!-- behaviours:end -->"
    assert start in text and end in text, "docs/testing.md lacks the behaviours table markers"
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == markdown_table(), (
        "docs/testing.md is out of date: paste `python -m tests.integration.behaviours`"
    )


def test_throttling_is_asked_again_and_never_taken_for_the_services_answer() -> None:
    fake = FakeS3Vectors()
    client = fake.client()
    client.create_vector_bucket(vectorBucketName="pinned")
    runner = ServiceRunner(client, "pinned")
    behaviour = {b.id: b for b in BEHAVIOURS}["implicit_and_of_top_level_keys"]

    fake.fail_next("PutVectors", "TooManyRequestsException", times=2)
    fake.fail_next("QueryVectors", "ServiceUnavailableException")
    assert differences(behaviour, runner.run(behaviour)) == []
    assert fake.calls["put_vectors"] == 3 and fake.calls["query_vectors"] == 2

    fake.fail_next("QueryVectors", "ValidationException", message="no such form")
    answered = runner.run(behaviour)
    assert answered[1] == {
        "rejected": True,
        "code": "ValidationException",
        "message": "no such form",
    }
    assert len(differences(behaviour, answered)) == 1
