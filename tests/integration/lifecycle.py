"""What the live suite creates in an AWS account, what it costs, and how it is removed again.

Everything the suite creates is named ``cmx-live-...`` and tagged ``crossmodal-live-test=<run
id>``, in the region of the run:

* one S3 vector bucket ``cmx-live-<run id>`` (its indexes live and die with it);
* one S3 general purpose bucket ``cmx-live-<account>-<run id>`` for the media the Nova tests
  embed and the output of the async segmented job.

:class:`LiveRun` creates them and removes them (:meth:`LiveRun.cleanup`, idempotent; called by
the session fixture's finalizer, at interpreter exit and on SIGTERM/SIGHUP). :func:`find_leftovers`
and :func:`sweep` remove what an earlier, killed run left: only resources carrying both the name
prefix and the tag, older than a given age; anything else is reported and left alone.

:class:`Usage` counts what a run does (Bedrock calls per modality, S3 Vectors and S3 requests and
bytes), :data:`PRICES` prices it, and :class:`UsageMeter` measures it from the boto3 clients'
events, so a run's cost bound (printed before it starts) and its measured usage (in
``integration-report.json``) come from one model. ``python -m tests.integration.sweep`` is the
command-line sweeper.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = [
    "NAME_PREFIX",
    "PRICES",
    "TAG_KEY",
    "CleanupReport",
    "Leftover",
    "LiveRun",
    "Prices",
    "Usage",
    "UsageMeter",
    "find_leftovers",
    "new_run_id",
    "sweep",
]

logger = logging.getLogger(__name__)

NAME_PREFIX = "cmx-live-"
TAG_KEY = "crossmodal-live-test"
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time and 24 random bits): sortable, valid in bucket names."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# -- prices and usage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """USD prices the cost bound uses (us-east-1, on demand). See :data:`PRICE_SOURCES`."""

    nova_text_per_1k_tokens: float = 0.000135
    nova_image: float = 0.00018
    nova_audio_per_second: float = 0.00014
    nova_video_per_second: float = 0.0007
    s3v_put_per_gb: float = 0.20
    #: Each PutVectors request is charged as at least this much data (assumed).
    s3v_put_minimum_bytes: int = 128 * 1024
    s3v_storage_per_gb_month: float = 0.06
    s3v_query_per_million: float = 2.50
    s3v_query_processed_per_gb: float = 0.01
    s3v_other_per_million: float = 5.00
    s3_put_per_1k: float = 0.005
    s3_get_per_1k: float = 0.0004
    s3_storage_per_gb_month: float = 0.023
    #: The bound multiplies the estimate by this, for prices we could not confirm.
    safety_factor: float = 2.0


PRICES = Prices()

#: Where each price comes from; shown in docs/live-aws.md and integration-report.json.
PRICE_SOURCES = (
    "Prices assumed on 2026-12-05, us-east-1, on-demand, in USD. None could be checked against "
    "the AWS pricing pages from the machine this was written on, so each is the highest figure "
    "found and the bound doubles the total (safety_factor). Nova Multimodal Embeddings: text "
    "$0.000135 per 1K tokens (counted as 1 token per character, an over-count for ASCII), "
    "$0.00018 per image, $0.00014 per audio second, $0.0007 per video second (third-party cost "
    "trackers citing the Amazon Bedrock pricing page). S3 Vectors: PUT $0.20 per GB with a "
    "128 KB minimum per request, storage $0.06 per GB-month, queries $2.50 per million plus "
    "$0.01 per GB processed (the highest third-party figure; others say $0.004 per TB; a query "
    "is counted as processing every byte ever put in its index), every other request $5 per "
    "million (assumed, as S3 PUT). S3 "
    "Standard: $0.005 per 1K PUT/LIST, $0.0004 per 1K GET, $0.023 per GB-month. Storage is "
    "charged as if kept a whole month. Check https://aws.amazon.com/bedrock/pricing/ and "
    "https://aws.amazon.com/s3/pricing/ before relying on the figure."
)

_GB = 1024**3


@dataclass
class Usage:
    """What a run does, in the units AWS charges by. Adds up with ``+``."""

    nova_text_calls: int = 0
    nova_text_chars: int = 0
    nova_image_calls: int = 0
    nova_audio_calls: int = 0
    nova_audio_seconds: float = 0.0
    nova_video_calls: int = 0
    nova_video_seconds: float = 0.0
    nova_async_jobs: int = 0
    s3v_put_requests: int = 0
    s3v_put_bytes: int = 0
    s3v_query_requests: int = 0
    s3v_query_processed_bytes: int = 0
    s3v_other_requests: int = 0
    s3_put_requests: int = 0
    s3_get_requests: int = 0
    s3_stored_bytes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def scaled(self, factor: int) -> Usage:
        """This usage ``factor`` times."""
        return Usage(**{f.name: getattr(self, f.name) * factor for f in dataclasses.fields(self)})

    def over(self, limit: Usage) -> dict[str, tuple[float, float]]:
        """Fields where this usage exceeds ``limit``: name -> (this, limit)."""
        out = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(limit, f.name)
            if mine > theirs:
                out[f.name] = (mine, theirs)
        return out

    def estimate(self, prices: Prices = PRICES) -> float:
        """Estimated USD (storage counted as a whole month), before the safety factor."""
        p = prices
        put_gb = max(self.s3v_put_bytes, self.s3v_put_requests * p.s3v_put_minimum_bytes) / _GB
        processed_gb = self.s3v_query_processed_bytes / _GB
        return (
            self.nova_text_chars / 1000 * p.nova_text_per_1k_tokens
            + self.nova_image_calls * p.nova_image
            + self.nova_audio_seconds * p.nova_audio_per_second
            + self.nova_video_seconds * p.nova_video_per_second
            + put_gb * (p.s3v_put_per_gb + p.s3v_storage_per_gb_month)
            + self.s3v_query_requests / 1e6 * p.s3v_query_per_million
            + processed_gb * p.s3v_query_processed_per_gb
            + self.s3v_other_requests / 1e6 * p.s3v_other_per_million
            + self.s3_put_requests / 1000 * p.s3_put_per_1k
            + self.s3_get_requests / 1000 * p.s3_get_per_1k
            + self.s3_stored_bytes / _GB * p.s3_storage_per_gb_month
        )

    def bound(self, prices: Prices = PRICES) -> float:
        """Upper bound in USD: :meth:`estimate` times the safety factor."""
        return self.estimate(prices) * prices.safety_factor

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: What creating and deleting the run's two buckets costs, at most (the indexes the tests create
#: are deleted with the bucket: one ListIndexes page and one DeleteIndex each).
LIFECYCLE_PLAN = Usage(s3v_other_requests=300, s3_put_requests=10)


# -- measuring usage from boto3 events -------------------------------------------------------------

#: Longest clip Bedrock embeds synchronously; the meter's ceiling for media it does not know.
MAX_SYNC_MEDIA_SECONDS = 30.0
_S3_READS = frozenset({"GetObject", "HeadObject", "HeadBucket"})
_FREE = frozenset({"GetCallerIdentity", "GetAsyncInvoke"})


class UsageMeter:
    """Counts the billable requests made through the clients it is attached to.

    Only successful requests count (throttled or rejected ones are not billed). Usage is kept
    per *scope* (the suite uses the test module's name, and ``"lifecycle"`` for setup and
    cleanup), set with :meth:`scope`. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: list[str] = ["unscoped"]
        self.usage: dict[str, Usage] = {}
        #: S3 URI of a media object -> its duration in seconds (registered when uploaded).
        self.media_seconds: dict[str, float] = {}
        self._index_bytes: dict[str, int] = {}

    def attach(self, client: Any) -> Any:
        """Measure ``client``'s requests; returns the client."""
        events = client.meta.events
        events.register("before-call", self._before)
        events.register("after-call", self._after)
        return client

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Attribute the requests made inside the block to ``name``."""
        with self._lock:
            self._scopes.append(name)
        try:
            yield
        finally:
            with self._lock:
                self._scopes.pop()

    def register_media(self, uri: str, seconds: float) -> None:
        """Tell the meter how long the audio/video at ``uri`` is."""
        with self._lock:
            self.media_seconds[uri] = seconds

    def total(self) -> Usage:
        with self._lock:
            out = Usage()
            for usage in self.usage.values():
                out = out + usage
            return out

    def _before(self, model: Any, params: Mapping[str, Any], context: Any, **_: Any) -> None:
        body = params.get("body", b"")
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif hasattr(body, "getvalue"):  # S3 wraps uploads in a BytesIO
            body = body.getvalue()
        if not isinstance(body, bytes | bytearray):
            body = b""
        context["cmx_meter"] = (model.service_model.service_name, model.name, bytes(body))

    def _after(self, http_response: Any, context: Any, **_: Any) -> None:
        info = context.get("cmx_meter")
        if info is None or http_response is None or http_response.status_code >= 300:
            return
        service, operation, body = info
        delta = self._price_request(service, operation, body)
        with self._lock:
            scope = self._scopes[-1]
            self.usage[scope] = self.usage.get(scope, Usage()) + delta

    def _media(self, spec: Mapping[str, Any]) -> float:
        uri = spec.get("source", {}).get("s3Location", {}).get("uri")
        with self._lock:
            return self.media_seconds.get(str(uri), MAX_SYNC_MEDIA_SECONDS)

    def _price_request(self, service: str, operation: str, body: bytes) -> Usage:
        if operation in _FREE:
            return Usage()
        if service == "bedrock-runtime":
            return self._bedrock(operation, body)
        if service == "s3vectors":
            return self._s3vectors(operation, body)
        if service == "s3":
            if operation in _S3_READS:
                return Usage(s3_get_requests=1)
            stored = len(body) if operation == "PutObject" else 0
            return Usage(s3_put_requests=1, s3_stored_bytes=stored)
        return Usage()

    def _bedrock(self, operation: str, body: bytes) -> Usage:
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        if operation == "StartAsyncInvoke":
            params = request.get("modelInput", {}).get("segmentedEmbeddingParams", {})
            usage = Usage(nova_async_jobs=1)
            for kind in ("video", "audio"):
                if kind in params:
                    seconds = self._media(params[kind])
                    usage = usage + (
                        Usage(nova_video_seconds=seconds)
                        if kind == "video"
                        else Usage(nova_audio_seconds=seconds)
                    )
            if "text" in params:
                usage = usage + Usage(nova_text_chars=len(str(params["text"].get("value", ""))))
            return usage
        if operation != "InvokeModel":
            return Usage()
        params = request.get("singleEmbeddingParams", {})
        if "text" in params:
            return Usage(nova_text_calls=1, nova_text_chars=len(str(params["text"].get("value"))))
        if "image" in params:
            return Usage(nova_image_calls=1)
        if "audio" in params:
            return Usage(nova_audio_calls=1, nova_audio_seconds=self._media(params["audio"]))
        if "video" in params:
            return Usage(nova_video_calls=1, nova_video_seconds=self._media(params["video"]))
        return Usage()

    def _s3vectors(self, operation: str, body: bytes) -> Usage:
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        index = str(
            request.get("indexArn")
            or f"{request.get('vectorBucketName')}/{request.get('indexName')}"
        )
        if operation == "PutVectors":
            with self._lock:
                self._index_bytes[index] = self._index_bytes.get(index, 0) + len(body)
            return Usage(s3v_put_requests=1, s3v_put_bytes=len(body))
        if operation == "QueryVectors":
            with self._lock:
                processed = self._index_bytes.get(index, 0)
            return Usage(s3v_query_requests=1, s3v_query_processed_bytes=processed)
        return Usage(s3v_other_requests=1)


# -- the run's resources ---------------------------------------------------------------------------


@dataclass
class CleanupReport:
    """What :meth:`LiveRun.cleanup` or :func:`sweep` deleted, and what it could not."""

    deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_GONE = frozenset({"NotFoundException", "NoSuchBucket", "404", "NotFound"})


class LiveRun:
    """The resources of one live run: a tagged vector bucket and a tagged S3 bucket.

    Args:
        s3vectors: an ``s3vectors`` client of the run's region.
        s3: an ``s3`` client of the same region.
        account_id: the caller's account (makes the S3 bucket name globally unique).
        region: the region every resource is created in.
        run_id: from :func:`new_run_id`.
    """

    def __init__(
        self,
        s3vectors: S3VectorsClient,
        s3: S3Client,
        *,
        account_id: str,
        region: str,
        run_id: str | None = None,
    ) -> None:
        self.s3vectors = s3vectors
        self.s3 = s3
        self.account_id = account_id
        self.region = region
        self.run_id = run_id or new_run_id()
        if not _RUN_ID.match(self.run_id):
            raise ValueError(f"run id {self.run_id!r} is not YYYYMMDD-HHMMSS-xxxxxx")
        self.vector_bucket = f"{NAME_PREFIX}{self.run_id}"
        self.media_bucket = f"{NAME_PREFIX}{account_id}-{self.run_id}"
        self.tags = {TAG_KEY: self.run_id}
        #: Resources created so far, in order ("s3vectors:bucket/NAME", "s3:NAME").
        self.created: list[str] = []
        self._cleaned = False
        self._lock = threading.Lock()
        self._previous_handlers: dict[int, Any] = {}

    def describe(self) -> list[str]:
        """What :meth:`create` will create, one line each."""
        tag = f"tag {TAG_KEY}={self.run_id}"
        return [
            f"S3 vector bucket {self.vector_bucket} in {self.region} ({tag}); the tests create "
            "their indexes in it",
            f"S3 bucket {self.media_bucket} in {self.region} ({tag}) for tiny generated media "
            "files and the async job's output",
        ]

    def create(self) -> None:
        """Create both buckets, tagged. Whatever was created is recorded before the next call."""
        self.s3vectors.create_vector_bucket(vectorBucketName=self.vector_bucket, tags=self.tags)
        self.created.append(f"s3vectors:bucket/{self.vector_bucket}")
        tag_set = [{"Key": k, "Value": v} for k, v in self.tags.items()]
        configuration: dict[str, Any] = {"Tags": tag_set}
        if self.region != "us-east-1":
            configuration["LocationConstraint"] = self.region
        self.s3.create_bucket(
            Bucket=self.media_bucket,
            CreateBucketConfiguration=configuration,  # type: ignore[arg-type]
        )
        self.created.append(f"s3:{self.media_bucket}")
        # Tags at creation are recent (and moto ignores them): tag again, explicitly.
        self.s3.put_bucket_tagging(Bucket=self.media_bucket, Tagging={"TagSet": tag_set})  # type: ignore[typeddict-item]

    def cleanup(self) -> CleanupReport:
        """Delete everything this run created (idempotent; later calls do nothing)."""
        with self._lock:
            if self._cleaned:
                return CleanupReport()
            self._cleaned = True
        report = CleanupReport()
        delete_vector_bucket(self.s3vectors, self.vector_bucket, report)
        delete_s3_bucket(self.s3, self.media_bucket, report)
        self.restore_signal_handlers()
        return report

    # -- interruption ---------------------------------------------------------------------------

    def install_interrupt_handlers(self) -> None:
        """Clean up at interpreter exit and on SIGTERM/SIGHUP (then die of the signal).

        Ctrl-C needs nothing extra: pytest turns it into KeyboardInterrupt and runs the session
        fixture's finalizer.
        """
        atexit.register(self._at_exit)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)
        self._previous_handlers.clear()
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        report = self.cleanup()
        for line in report.deleted:
            logger.warning("live suite: removed %s at exit", line)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.cleanup()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _paginate(call: Callable[..., Any], key: str, **kwargs: Any) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = call(**kwargs, **({"nextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return


def delete_vector_bucket(client: S3VectorsClient, name: str, report: CleanupReport) -> None:
    """Delete a vector bucket and every index in it; a missing bucket is not an error."""
    try:
        for index in list(_paginate(client.list_indexes, "indexes", vectorBucketName=name)):
            client.delete_index(vectorBucketName=name, indexName=index["indexName"])
            report.deleted.append(f"s3vectors:bucket/{name}/index/{index['indexName']}")
        client.delete_vector_bucket(vectorBucketName=name)
        report.deleted.append(f"s3vectors:bucket/{name}")
    except Exception as exc:
        if _error_code(exc) not in _GONE:
            report.errors.append(f"s3vectors:bucket/{name}: {exc}")


def delete_s3_bucket(client: S3Client, name: str, report: CleanupReport) -> None:
    """Empty and delete an S3 bucket; a missing bucket is not an error."""
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})  # type: ignore[typeddict-item]
                report.deleted.extend(f"s3://{name}/{k['Key']}" for k in keys)
        client.delete_bucket(Bucket=name)
        report.deleted.append(f"s3:{name}")
    except Exception as exc:
        if _error_code(exc) not in _GONE:
            report.errors.append(f"s3:{name}: {exc}")


# -- sweeping leftovers of interrupted runs --------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    """A resource found by :func:`find_leftovers`; ``removable`` says whether :func:`sweep` acts."""

    kind: str  # "s3vectors" or "s3"
    name: str
    created: datetime
    run_id: str | None
    removable: bool
    reason: str


def _aware(moment: Any) -> datetime:
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(moment), tz=timezone.utc)


def find_leftovers(
    s3vectors: S3VectorsClient,
    s3: S3Client | None,
    *,
    older_than: timedelta,
    region: str,
    now: datetime | None = None,
) -> list[Leftover]:
    """Buckets in ``region`` named ``cmx-live-...``: which are a suite's leftovers, and why.

    A bucket is removable only when it carries the suite's tag and was created more than
    ``older_than`` ago (a younger one may belong to a run in progress). One with the prefix but
    without the tag is listed as not removable: the suite did not create it (or was killed
    between creating and tagging it, the one round trip where that can happen).
    """
    moment = now or datetime.now(timezone.utc)
    found: list[Leftover] = []

    def judge(kind: str, name: str, created: datetime, tags: Mapping[str, str]) -> Leftover:
        run_id = tags.get(TAG_KEY)
        age = moment - created
        if run_id is None:
            return Leftover(kind, name, created, None, False, f"no {TAG_KEY} tag: not ours")
        if age < older_than:
            minutes = age.total_seconds() / 60
            return Leftover(kind, name, created, run_id, False, f"{minutes:.0f} min old: too young")
        return Leftover(kind, name, created, run_id, True, f"run {run_id}, left over")

    for bucket in _paginate(
        s3vectors.list_vector_buckets,
        "vectorBuckets",
        prefix=NAME_PREFIX,
    ):
        name = bucket["vectorBucketName"]
        if not name.startswith(NAME_PREFIX):
            continue
        tags = s3vectors.list_tags_for_resource(resourceArn=bucket["vectorBucketArn"])["tags"]
        found.append(judge("s3vectors", name, _aware(bucket["creationTime"]), tags))
    if s3 is not None:
        listed = s3.list_buckets(Prefix=NAME_PREFIX, BucketRegion=region)
        for bucket in listed.get("Buckets", []):
            name = bucket["Name"]
            if not name.startswith(NAME_PREFIX):
                continue
            try:
                tag_set = s3.get_bucket_tagging(Bucket=name)["TagSet"]
            except Exception as exc:
                if _error_code(exc) not in ("NoSuchTagSet", *_GONE):
                    raise
                tag_set = []
            tags = {t["Key"]: t["Value"] for t in tag_set}
            found.append(judge("s3", name, _aware(bucket["CreationDate"]), tags))
    return found


def sweep(
    s3vectors: S3VectorsClient,
    s3: S3Client | None,
    *,
    older_than: timedelta,
    region: str,
    dry_run: bool = False,
    now: datetime | None = None,
) -> tuple[list[Leftover], CleanupReport]:
    """Delete the removable leftovers :func:`find_leftovers` finds; returns them and the report."""
    leftovers = find_leftovers(s3vectors, s3, older_than=older_than, region=region, now=now)
    report = CleanupReport()
    if dry_run:
        return leftovers, report
    for item in leftovers:
        if not item.removable:
            continue
        if item.kind == "s3vectors":
            delete_vector_bucket(s3vectors, item.name, report)
        elif s3 is not None:
            delete_s3_bucket(s3, item.name, report)
    return leftovers, report
