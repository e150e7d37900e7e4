"""The S3 Vectors behaviours AWS does not document, and what we assume about each: one table.

Each :class:`Behaviour` is a short script of wire-level requests (``put_vectors``,
``query_vectors``, ``get_vectors``) against a fresh index, the outcome we assume for every step,
and the place in our code that encodes that assumption. The same table drives

* the offline test (``tests/test_live_behaviours.py``): FakeS3Vectors (through a real boto3
  client) and LocalVectorStore must both produce the assumed outcome;
* the live test (``tests/integration/test_live_behaviours.py``): the real service's answer is
  recorded in ``integration-report.json`` and compared with the assumption; a difference fails
  with the file and function to change;
* the table in ``docs/testing.md`` (:func:`markdown_table`, checked by the offline test).

Outcomes are plain JSON (:data:`Step`), so the report shows exactly what each side answered.
Run ``python -m tests.integration.behaviours`` to print the docs table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from crossmodal_search.errors import CrossmodalSearchError
from crossmodal_search.stores import LocalVectorStore, VectorRecord

if TYPE_CHECKING:
    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "Get",
    "LocalRunner",
    "Put",
    "Query",
    "ServiceRunner",
    "Step",
    "Vec",
    "differences",
    "markdown_table",
]

#: One step's outcome, as JSON: ``{"rejected": True, "code": ...}`` or what the step returned.
Step = dict[str, Any]

FILTER = "src/crossmodal_search/stores/_filter.py"
LIMITS = "src/crossmodal_search/stores/_limits.py"
LOCAL = "src/crossmodal_search/stores/_local.py"
FAKE = "src/crossmodal_search/testing/_s3vectors_resources.py"
FAKE_DATA = "src/crossmodal_search/testing/_s3vectors_data.py"
FAKE_QUERY = "src/crossmodal_search/testing/_s3vectors_text.py"
FAKE_MODEL = "src/crossmodal_search/testing/_s3vectors_model.py"
S3STORE = "src/crossmodal_search/stores/_s3vectors.py"


@dataclass(frozen=True)
class Vec:
    """A vector as sent in ``put_vectors``."""

    key: str
    data: tuple[float, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        item: dict[str, Any] = {"key": self.key, "data": {"float32": list(self.data)}}
        if self.metadata:
            item["metadata"] = dict(self.metadata)
        return item


@dataclass(frozen=True)
class Put:
    """``put_vectors`` with these vectors. Outcome: ``{"ok": True}`` or rejected."""

    vectors: tuple[Vec, ...]


@dataclass(frozen=True)
class Get:
    """``get_vectors`` (data and metadata). Outcome: the keys found (sorted) and their contents."""

    keys: tuple[str, ...]


#: A filter value meaning "send no filter at all".
NO_FILTER: Any = None


@dataclass(frozen=True)
class Query:
    """``query_vectors``. Outcome: the keys (sorted, or in rank order with distances)."""

    vector: tuple[float, ...]
    top_k: int = 10
    filter: Any = NO_FILTER
    ranked: bool = False  # keep rank order and report distances
    #: address the index by ``indexArn`` *and* send ``vectorBucketName`` too (service only)
    arn_and_bucket: bool = False


Action = Put | Get | Query


@dataclass(frozen=True)
class Behaviour:
    """One undocumented behaviour: a script, what we assume it answers, and where we assume it."""

    id: str
    title: str
    assumption: str
    where: str
    steps: tuple[Action, ...]
    expected: tuple[Step, ...]
    metric: Literal["cosine", "euclidean"] = "cosine"
    dimension: int = 4
    #: Absolute tolerance on distances and vector components.
    tolerance: float = 1e-6
    #: False when the behaviour has no meaning for LocalVectorStore (wire addressing).
    local: bool = True

    @property
    def index_name(self) -> str:
        """Index name on S3 Vectors: 3-63 of a-z 0-9 - ."""
        return "pin-" + self.id.replace("_", "-")

    @property
    def live_test(self) -> str:
        """The live test's node id."""
        return (
            f"tests/integration/test_live_behaviours.py::test_service_matches_assumption[{self.id}]"
        )


# -- the table --------------------------------------------------------------------------------

E1, E2, E3, E4 = (1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (1.0, 1.0, 0, 0)
OK: Step = {"ok": True}
REJECTED: Step = {"rejected": True}
BIG = 2**53 + 1  # the first integer a double cannot hold


def _keys(*keys: str) -> Step:
    return {"keys": sorted(keys)}


COLORS = Put(
    (
        Vec("a", E1, {"color": "red"}),
        Vec("b", E2, {"color": "blue"}),
        Vec("c", E3, {"size": "m"}),
    )
)
TAGS = Put(
    (
        Vec("a", E1, {"tags": ["x", "y"]}),
        Vec("b", E2, {"tags": ["y"]}),
        Vec("c", E3, {"tags": ["z"]}),
    )
)

BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        id="ne_on_missing_field",
        title="`$ne` on a record without the field",
        assumption="matches (negations are exact complements of `$eq`)",
        where=f"{FILTER}: _Cond.matches (negate)",
        steps=(COLORS, Query(E4, filter={"color": {"$ne": "red"}})),
        expected=(OK, _keys("b", "c")),
    ),
    Behaviour(
        id="nin_on_missing_field",
        title="`$nin` on a record without the field",
        assumption="matches (complement of `$in`)",
        where=f"{FILTER}: _Cond.matches (negate)",
        steps=(COLORS, Query(E4, filter={"color": {"$nin": ["red"]}})),
        expected=(OK, _keys("b", "c")),
    ),
    Behaviour(
        id="ne_on_list_field",
        title="`$ne` on a list field",
        assumption="matches when no element equals the operand",
        where=f"{FILTER}: _Cond.matches (any element, then negate)",
        steps=(TAGS, Query(E4, filter={"tags": {"$ne": "x"}})),
        expected=(OK, _keys("b", "c")),
    ),
    Behaviour(
        id="nin_on_list_field",
        title="`$nin` on a list field",
        assumption="matches when no element is in the list",
        where=f"{FILTER}: _Cond.matches (any element, then negate)",
        steps=(TAGS, Query(E4, filter={"tags": {"$nin": ["x", "z"]}})),
        expected=(OK, _keys("b")),
    ),
    Behaviour(
        id="integer_beyond_2_53_compares_as_double",
        title="`$eq` with an integer beyond 2^53",
        assumption="numbers compare as IEEE doubles: 2^53 equals a stored 2^53+1",
        where=f"{FILTER}: _classify (float(value))",
        steps=(
            Put((Vec("a", E1, {"n": BIG}), Vec("b", E2, {"n": 2**53}), Vec("c", E3, {"n": 1}))),
            Query(E4, filter={"n": 2**53}),
        ),
        expected=(OK, _keys("a", "b")),
    ),
    Behaviour(
        id="integer_beyond_2_53_round_trips",
        title="an integer beyond 2^53 in metadata, read back",
        assumption="stored and returned exactly as written",
        where=f"{LIMITS}: _scalar (keeps int); {FAKE_DATA}: put_vectors (stores parsed JSON)",
        steps=(Put((Vec("a", E1, {"n": BIG}),)), Get(("a",))),
        expected=(OK, {"keys": ["a"], "metadata": {"a": {"n": BIG}}, "data": {"a": list(E1)}}),
    ),
    Behaviour(
        id="implicit_and_of_top_level_keys",
        title="several top-level keys in one filter",
        assumption="ANDed, like an explicit `$and`",
        where=f"{FILTER}: _compile (several clauses -> _And)",
        steps=(
            Put(
                (
                    Vec("a", E1, {"color": "red", "size": "m"}),
                    Vec("b", E2, {"color": "red", "size": "l"}),
                    Vec("c", E3, {"color": "blue", "size": "m"}),
                )
            ),
            Query(E4, filter={"color": "red", "size": "m"}),
        ),
        expected=(OK, _keys("a")),
    ),
    Behaviour(
        id="several_operators_on_one_field",
        title="several operators on one field (a range)",
        assumption="ANDed: `{'$gte': 10, '$lte': 20}` is a range",
        where=f"{FILTER}: _compile_field (several operators -> _And)",
        steps=(
            Put(
                (
                    Vec("a", E1, {"price": 5}),
                    Vec("b", E2, {"price": 15}),
                    Vec("c", E3, {"price": 25.0}),
                )
            ),
            Query(E4, filter={"price": {"$gte": 10, "$lte": 20}}),
        ),
        expected=(OK, _keys("b")),
    ),
    Behaviour(
        id="get_vectors_with_missing_keys",
        title="`get_vectors` asked for keys that do not exist",
        assumption="no error; missing keys are left out of the answer",
        where=f"{FAKE_DATA}: get_vectors; {S3STORE}: S3VectorsStore.get (reports them missing)",
        steps=(Put((Vec("a", E1, {"v": 1}),)), Get(("a", "missing"))),
        expected=(OK, {"keys": ["a"], "metadata": {"a": {"v": 1}}, "data": {"a": list(E1)}}),
    ),
    Behaviour(
        id="put_overwrites_an_existing_key",
        title="`put_vectors` with a key that exists",
        assumption="an upsert: vector and metadata are replaced",
        where=f"{FAKE_DATA}: put_vectors; {LOCAL}: LocalVectorStore.put",
        steps=(
            Put((Vec("a", E1, {"v": 1, "old": True}),)),
            Put((Vec("a", E2, {"v": 2}),)),
            Get(("a",)),
        ),
        expected=(OK, OK, {"keys": ["a"], "metadata": {"a": {"v": 2}}, "data": {"a": list(E2)}}),
    ),
    Behaviour(
        id="duplicate_keys_in_one_put",
        title="the same key twice in one `put_vectors`",
        assumption="the whole request is rejected and nothing is written",
        where=f"{FAKE_DATA}: put_vectors; {LIMITS}: validate_batch",
        steps=(Put((Vec("a", E1, {"v": 1}), Vec("a", E2, {"v": 2}))), Get(("a",))),
        expected=(REJECTED, {"keys": [], "metadata": {}, "data": {}}),
    ),
    Behaviour(
        id="index_arn_with_bucket_name",
        title="`indexArn` sent together with `vectorBucketName`",
        assumption="rejected (ValidationException), as moto does",
        where=f"{FAKE}: Resources._index",
        steps=(Put((Vec("a", E1),)), Query(E1, arn_and_bucket=True)),
        expected=(OK, REJECTED),
        local=False,
    ),
    Behaviour(
        id="empty_filter",
        title="`{}` as a filter",
        assumption="rejected; send no filter to match everything",
        where=f"{FILTER}: _compile (empty filter)",
        steps=(Put((Vec("a", E1),)), Query(E1, filter={})),
        expected=(OK, REJECTED),
    ),
    Behaviour(
        id="mixed_type_list",
        title="a list mixing numbers, strings and booleans",
        assumption="accepted; each element matches on its own type",
        where=f"{LIMITS}: normalize_metadata; {FILTER}: _Cond.matches",
        steps=(
            Put((Vec("a", E1, {"vals": [1, "x", True]}), Vec("b", E2, {"vals": ["y", 2.5]}))),
            Query(E4, filter={"vals": "x"}),
            Query(E4, filter={"vals": 1}),
            Query(E4, filter={"vals": True}),
            Query(E4, filter={"vals": {"$gt": 2}}),
        ),
        expected=(OK, _keys("a"), _keys("a"), _keys("a"), _keys("b")),
    ),
    Behaviour(
        id="nan_in_metadata",
        title="NaN in metadata",
        assumption="rejected and nothing written",
        where=f"{LIMITS}: _scalar; {FAKE_DATA}: check_metadata",
        steps=(Put((Vec("a", E1, {"x": math.nan}),)), Get(("a",))),
        expected=(REJECTED, {"keys": [], "metadata": {}, "data": {}}),
    ),
    Behaviour(
        id="cosine_distance_of_identical_vectors",
        title="cosine distance of a vector to itself (and to an orthogonal one)",
        assumption="1 - cosine similarity: 0.0 for identical, 1.0 for orthogonal",
        where=f"{LOCAL}: LocalVectorStore.query (exact distances); {FAKE_QUERY}: _vector_ranking",
        steps=(
            Put((Vec("a", (0.1, 0.2, 0.3, 0.4)), Vec("b", (0.4, -0.3, 0.2, -0.1)))),
            Query((0.1, 0.2, 0.3, 0.4), ranked=True),
        ),
        expected=(OK, {"keys": ["a", "b"], "distances": [0.0, 1.0]}),
    ),
    Behaviour(
        id="euclidean_is_plain_l2",
        title="Euclidean `distance`: plain or squared L2",
        assumption="plain L2 (5.0 for a (3, 4) difference, not 25.0)",
        where=f"{LOCAL}: LocalVectorStore.query (exact distances); {FAKE_QUERY}: _vector_ranking",
        steps=(
            Put((Vec("a", (4.0, 5.0, 0.0, 0.0)), Vec("b", (1.0, 1.0, 1.0, 0.0)))),
            Query((1.0, 1.0, 0.0, 0.0), ranked=True),
        ),
        expected=(OK, {"keys": ["b", "a"], "distances": [1.0, 5.0]}),
        metric="euclidean",
        tolerance=1e-5,
    ),
    Behaviour(
        id="top_k_over_100",
        title="`topK` above 100",
        assumption="rejected (the documented maximum is 100)",
        where=f"{LIMITS}: StoreLimits.max_top_k; {FAKE_MODEL}: MAX_TOP_K",
        steps=(Put((Vec("a", E1),)), Query(E1, top_k=101)),
        expected=(OK, REJECTED),
    ),
)


# -- comparing outcomes -----------------------------------------------------------------------


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return False
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tolerance
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    return type(a) is type(b) and a == b


def _comparable(step: Step) -> Step:
    # Error code and message are recorded for the report, not compared: stores raise their own.
    return {k: v for k, v in step.items() if k not in ("code", "message")}


def differences(
    behaviour: Behaviour, observed: Sequence[Step], *, distances_exact: bool = False
) -> list[str]:
    """Steps where ``observed`` differs from the behaviour's assumption (empty when it agrees).

    Integers are compared exactly (``2**53 + 1 != 2**53``), floats within the behaviour's
    tolerance (an int and a float of the same value agree, as JSON numbers do).
    """
    out = []
    tolerance = 0.0 if distances_exact else behaviour.tolerance
    for i, (want, got) in enumerate(zip(behaviour.expected, observed, strict=True)):
        if not _close(_comparable(want), _comparable(got), tolerance):
            out.append(f"step {i + 1} ({type(behaviour.steps[i]).__name__}): {got} != {want}")
    return out


# -- runners ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe copy of an answer (numpy scalars and non-finite floats made explicit)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Answers that say nothing about the request (throttling, a busy service): asked again.
_TRANSIENT = frozenset(
    {
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "InternalServerException",
        "RequestTimeoutException",
    }
)


class ServiceRunner:
    """Runs behaviours on an S3 Vectors service (real, or a fake attached to a boto3 client).

    Each behaviour gets its own index in ``bucket`` (which must exist), tagged with ``tags``.
    Throttled or transient answers are retried (up to ``attempts`` times, backing off), so only
    the service's verdict on the request itself is recorded.
    """

    attempts = 6

    def __init__(
        self, client: S3VectorsClient, bucket: str, *, tags: Mapping[str, str] | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.tags = dict(tags or {})
        #: Behaviour id -> the index's mode as reported by ``get_index`` (``indexMode``).
        self.index_modes: dict[str, str | None] = {}

    def create_index(self, behaviour: Behaviour) -> str:
        """Create the behaviour's index; return its ARN."""
        kwargs: dict[str, Any] = {}
        if self.tags:
            kwargs["tags"] = self.tags
        self.client.create_index(
            vectorBucketName=self.bucket,
            indexName=behaviour.index_name,
            dataType="float32",
            dimension=behaviour.dimension,
            distanceMetric=behaviour.metric,
            **kwargs,
        )
        # moto's create_index answers {} without indexArn; get_index is the portable way.
        index = self.client.get_index(vectorBucketName=self.bucket, indexName=behaviour.index_name)
        self.index_modes[behaviour.id] = index["index"].get("indexMode")
        return str(index["index"]["indexArn"])

    def run(self, behaviour: Behaviour) -> list[Step]:
        """Create the index, run every step, delete the index; return each step's outcome."""
        from botocore.exceptions import ClientError

        arn = self.create_index(behaviour)
        address = {"vectorBucketName": self.bucket, "indexName": behaviour.index_name}
        out: list[Step] = []
        try:
            for step in behaviour.steps:
                try:
                    out.append(self._retrying(step, address, arn))
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    out.append(
                        {
                            "rejected": True,
                            "code": error.get("Code"),
                            "message": str(error.get("Message", ""))[:300],
                        }
                    )
        finally:
            self.client.delete_index(**address)
        return out

    def _retrying(self, step: Action, address: dict[str, str], arn: str) -> Step:
        from botocore.exceptions import ClientError

        for attempt in range(self.attempts):
            try:
                return self._step(step, address, arn)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in _TRANSIENT or attempt == self.attempts - 1:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _step(self, step: Action, address: dict[str, str], arn: str) -> Step:
        client: Any = self.client
        if isinstance(step, Put):
            client.put_vectors(**address, vectors=[v.wire() for v in step.vectors])
            return dict(OK)
        if isinstance(step, Get):
            found = client.get_vectors(
                **address, keys=list(step.keys), returnData=True, returnMetadata=True
            )["vectors"]
            return _get_outcome(
                {
                    v["key"]: (v.get("data", {}).get("float32", []), v.get("metadata", {}))
                    for v in found
                }
            )
        target = (
            {"indexArn": arn, "vectorBucketName": self.bucket} if step.arn_and_bucket else address
        )
        kwargs: dict[str, Any] = {
            "topK": step.top_k,
            "queryVector": {"float32": list(step.vector)},
            "returnDistance": True,
        }
        if step.filter is not NO_FILTER:
            kwargs["filter"] = step.filter
        answer = client.query_vectors(**target, **kwargs)["vectors"]
        return _query_outcome(
            step, [(v["key"], float(v.get("distance", math.nan))) for v in answer]
        )


class LocalRunner:
    """Runs behaviours on a fresh in-memory :class:`LocalVectorStore` each."""

    def run(self, behaviour: Behaviour) -> list[Step]:
        store = LocalVectorStore(
            dimension=behaviour.dimension,
            distance_metric=behaviour.metric,
            non_filterable_metadata_keys=(),
        )
        out: list[Step] = []
        with store:
            for step in behaviour.steps:
                try:
                    out.append(self._step(store, step))
                except CrossmodalSearchError as exc:
                    out.append({"rejected": True, "code": type(exc).__name__})
        return out

    @staticmethod
    def _step(store: LocalVectorStore, step: Action) -> Step:
        if isinstance(step, Put):
            store.put([VectorRecord.create(v.key, v.data, v.metadata) for v in step.vectors])
            return dict(OK)
        if isinstance(step, Get):
            got = store.get(list(step.keys))
            return _get_outcome({r.key: (r.vector.tolist(), dict(r.metadata)) for r in got.records})
        if step.arn_and_bucket:
            raise ValueError("index addressing has no meaning for LocalVectorStore")
        flt = None if step.filter is NO_FILTER else step.filter
        matches = store.query(np.asarray(step.vector), top_k=step.top_k, filter=flt)
        return _query_outcome(step, [(m.key, m.distance) for m in matches])


def _get_outcome(found: Mapping[str, tuple[list[float], Mapping[str, Any]]]) -> Step:
    keys = sorted(found)
    return {
        "keys": keys,
        "metadata": {k: _plain(found[k][1]) for k in keys},
        "data": {k: [float(x) for x in found[k][0]] for k in keys},
    }


def _query_outcome(step: Query, hits: Sequence[tuple[str, float]]) -> Step:
    if step.ranked:
        return {"keys": [k for k, _ in hits], "distances": [d for _, d in hits]}
    return {"keys": sorted(k for k, _ in hits)}


Runner = Callable[[Behaviour], list[Step]]


# -- docs -------------------------------------------------------------------------------------


def markdown_table() -> str:
    """The docs/testing.md table: behaviour, our assumption, where it lives, the live test."""
    lines = [
        "| Behaviour | What we assume | Where we assume it "
        "| Live test in `tests/integration/test_live_behaviours.py` |",
        "| --- | --- | --- | --- |",
    ]
    for b in BEHAVIOURS:
        where = b.where.replace("src/crossmodal_search/", "")
        lines.append(
            f"| {b.title} | {b.assumption} | `{where}` | "
            f"`test_service_matches_assumption[{b.id}]` |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table())
