"""The index side of ``S3VectorsStore``: describe, create, index modes and text configurations.

An index's dimension, metric and non-filterable keys are fixed at creation; its mode and its text
search configurations are not. S3 Vectors' ``create_index`` takes no mode: a new index gets its
bucket's ``defaultIndexMode`` (``CLASSIC`` for buckets created before 30 Sep 2026, ``ENHANCED``
after), and only an ``ENHANCED`` index takes text search configurations. So an index asked for
with text fields in an old bucket is created, moved to ``ENHANCED`` in place (free, no
re-ingestion) and then given its configurations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import IndexMismatchError, ResourceNotFoundError, ServiceError
from crossmodal_search.stores._limits import validate_distance_metric
from crossmodal_search.stores._s3v_wire import (
    TextSearchConfigurationWire,
    UpdateMetadataConfigurationRequest,
    text_search_client,
)
from crossmodal_search.stores._text import IndexMode, TextField

if TYPE_CHECKING:
    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = [
    "UPGRADE_HINT",
    "Caller",
    "IndexAdmin",
    "IndexState",
    "check_compatible",
    "index_state",
    "text_configurations",
    "text_fields_to_add",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Caller(Protocol):
    """``call(operation, fn)``: one AWS call through the store's retry layer."""

    def __call__(self, operation: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` as ``operation``."""
        ...


#: How to upgrade a CLASSIC index, quoted by every error that needs ENHANCED.
UPGRADE_HINT = (
    "move it with update_index_mode('ENHANCED'): in place, no re-ingestion, no change to your "
    "queries and no extra charge"
)


@dataclass(frozen=True)
class IndexState:
    """What ``GetIndex`` says about an index, parsed."""

    dimension: int
    distance_metric: DistanceMetric
    non_filterable: frozenset[str]
    mode: IndexMode
    text_fields: tuple[TextField, ...]


def index_state(index: Mapping[str, Any]) -> IndexState:
    """Parse a ``GetIndex`` ``index``; no ``indexMode`` (older answers, moto) means CLASSIC."""
    config: Mapping[str, Any] = index.get("metadataConfiguration") or {}
    raw = index.get("indexMode") or "CLASSIC"
    if raw not in ("CLASSIC", "ENHANCED"):
        logger.warning("unknown index mode %r; treating it as ENHANCED", raw)
    mode: IndexMode = "CLASSIC" if raw == "CLASSIC" else "ENHANCED"
    fields = tuple(
        TextField(c["metadataKey"], c.get("language"), c.get("status") or "ACTIVE")
        for c in config.get("textSearchConfigurations") or ()
    )
    return IndexState(
        dimension=int(index["dimension"]),
        distance_metric=validate_distance_metric(index["distanceMetric"]),
        non_filterable=frozenset(config.get("nonFilterableMetadataKeys") or ()),
        mode=mode,
        text_fields=fields,
    )


def text_fields_to_add(
    requested: Sequence[TextField], state: IndexState, name: str
) -> tuple[TextField, ...]:
    """The requested fields the index lacks; fields it has beyond them are kept.

    Raises:
        IndexMismatchError: a field is configured with another language, or fields are missing
            on a CLASSIC index (which cannot take them).
    """
    found = {f.key: f for f in state.text_fields}
    for field in requested:
        have = found.get(field.key)
        if have is not None and have.language != field.language:
            raise IndexMismatchError(
                f"{name} searches metadata key {field.key!r} with the "
                f"{_analyzer(have.language)} analyzer, but {_analyzer(field.language)} was "
                "requested; a configuration cannot change in place: remove_text_fields(["
                f"{field.key!r}]) then add_text_fields([...]) rebuilds it with the new language"
            )
    missing = tuple(f for f in requested if f.key not in found)
    if missing and state.mode != "ENHANCED":
        raise IndexMismatchError(
            f"{name} is CLASSIC, so it cannot take the text fields "
            f"{[f.key for f in missing]}: full-text search needs an ENHANCED index; {UPGRADE_HINT}"
        )
    return missing


def _analyzer(language: str | None) -> str:
    return "standard" if language is None else repr(language)


def text_configurations(fields: Iterable[TextField]) -> list[TextSearchConfigurationWire]:
    """The wire form of text fields; ``status`` is output only and never sent."""
    out: list[TextSearchConfigurationWire] = []
    for f in fields:
        config: TextSearchConfigurationWire = {"metadataKey": f.key}
        if f.language is not None:
            config["language"] = f.language
        out.append(config)
    return out


class IndexAdmin:
    """The index-level calls of one store (every call through the store's retry layer)."""

    def __init__(
        self,
        client: S3VectorsClient,
        bucket: str,
        index: str,
        call: Caller,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._index = index
        self._call = call
        self.name = f"S3 Vectors index {bucket}/{index}"
        #: True once :meth:`create` made the index (not found made by someone else).
        self.created = False

    def describe(self, *, must_exist: bool) -> Mapping[str, Any] | None:
        """The ``GetIndex`` ``index``; None when it does not exist and ``must_exist`` is False.

        Raises:
            ResourceNotFoundError: it does not exist and ``must_exist`` is True.
        """
        try:
            response = self._call(
                "GetIndex",
                lambda: self._client.get_index(
                    vectorBucketName=self._bucket, indexName=self._index
                ),
            )
        except ResourceNotFoundError as exc:
            if not must_exist:
                return None
            raise ResourceNotFoundError(
                f"{self.name} does not exist (create=False): create it or pass create=True",
                code=exc.code,
                request_id=exc.request_id,
                status_code=exc.status_code,
                operation=exc.operation,
            ) from exc
        return cast("Mapping[str, Any]", response["index"])

    def create(
        self,
        dimension: int,
        metric: DistanceMetric,
        non_filterable: frozenset[str],
        text_fields: Sequence[TextField],
    ) -> Mapping[str, Any]:
        """Create the index (and the bucket when missing); return its description.

        With ``text_fields`` the bucket's default mode decides: ENHANCED takes them in
        ``create_index``; CLASSIC creates the index, moves it to ENHANCED and adds them.
        An index created concurrently by someone else is described and returned as it is.
        """
        keys = sorted(non_filterable)
        config: dict[str, Any] = {}
        if keys:  # older API versions required 1-10 keys when the structure is present
            config["nonFilterableMetadataKeys"] = keys
        upgrade = False
        if text_fields:
            if self.bucket_default_mode(create=True) == "ENHANCED":
                config["textSearchConfigurations"] = text_configurations(text_fields)
            else:
                upgrade = True
        request: dict[str, Any] = {
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "dataType": "float32",
            "dimension": dimension,
            "distanceMetric": metric,
        }
        if config:
            request["metadataConfiguration"] = config

        def create_index() -> None:
            self._call("CreateIndex", lambda: self._client.create_index(**request))

        try:
            # The index first: an existing bucket then needs no CreateVectorBucket permission.
            try:
                create_index()
            except ResourceNotFoundError:
                self._create_bucket()
                create_index()
        except ServiceError as exc:
            if exc.code != "ConflictException":
                raise
            # Created concurrently by someone else: the caller checks compatibility.
            return self._described()
        self.created = True
        logger.info(
            "created %s (dimension=%d, metric=%s, non-filterable=%s, text fields=%s)",
            self.name,
            dimension,
            metric,
            keys,
            [f.key for f in text_fields],
        )
        if upgrade:
            logger.info(
                "%s: its bucket makes CLASSIC indexes; moving it to ENHANCED for full-text search",
                self.name,
            )
            self.update_index_mode("ENHANCED")
            self.add_text_fields(text_fields)
        return self._described()

    def _described(self) -> Mapping[str, Any]:
        described = self.describe(must_exist=True)
        assert described is not None
        return described

    def _create_bucket(self) -> None:
        try:
            self._call(
                "CreateVectorBucket",
                lambda: self._client.create_vector_bucket(vectorBucketName=self._bucket),
            )
            logger.info("created S3 vector bucket %s", self._bucket)
        except ServiceError as exc:
            if exc.code != "ConflictException":
                raise
            logger.debug("S3 vector bucket %s was created concurrently; reusing it", self._bucket)

    def bucket_default_mode(self, *, create: bool = False) -> IndexMode:
        """The mode new indexes of the bucket get (no ``defaultIndexMode``: CLASSIC).

        With ``create``, a missing bucket is created first.
        """
        get = lambda: self._client.get_vector_bucket(vectorBucketName=self._bucket)  # noqa: E731
        try:
            response = self._call("GetVectorBucket", get)
        except ResourceNotFoundError:
            if not create:
                raise
            self._create_bucket()
            response = self._call("GetVectorBucket", get)
        mode = response["vectorBucket"].get("defaultIndexMode") or "CLASSIC"
        return "ENHANCED" if mode == "ENHANCED" else "CLASSIC"

    def update_index_mode(self, mode: IndexMode) -> None:
        """``UpdateIndexMode``."""
        self._call(
            "UpdateIndexMode",
            lambda: self._client.update_index_mode(
                vectorBucketName=self._bucket, indexName=self._index, indexMode=mode
            ),
        )

    def add_text_fields(self, fields: Sequence[TextField]) -> None:
        """``UpdateMetadataConfiguration`` with ``add`` (S3 Vectors then backfills them)."""
        request: UpdateMetadataConfigurationRequest = {
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "add": {"textSearchConfigurations": text_configurations(fields)},
        }
        client = text_search_client(self._client)
        self._call(
            "UpdateMetadataConfiguration",
            lambda: client.update_metadata_configuration(**request),
        )

    def delete_text_fields(self, keys: Sequence[str]) -> None:
        """``UpdateMetadataConfiguration`` with ``delete``."""
        request: UpdateMetadataConfigurationRequest = {
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "delete": {"textSearchConfigurations": [{"metadataKey": k} for k in keys]},
        }
        client = text_search_client(self._client)
        self._call(
            "UpdateMetadataConfiguration",
            lambda: client.update_metadata_configuration(**request),
        )


def check_compatible(
    state: IndexState,
    name: str,
    dimension: int | None,
    metric: DistanceMetric,
    requested_keys: frozenset[str],
    *,
    explicit_keys: bool,
) -> None:
    """Raise :class:`IndexMismatchError` unless the index fits the store's arguments."""
    if dimension is not None and state.dimension != dimension:
        raise IndexMismatchError(
            f"{name} has dimension {state.dimension}, but dimension={dimension} was requested; "
            "use another index name or the index's dimension"
        )
    if state.distance_metric != metric:
        raise IndexMismatchError(
            f"{name} uses the {state.distance_metric!r} distance metric, but {metric!r} was "
            "requested; an index's metric cannot be changed"
        )
    if state.non_filterable != requested_keys:
        if explicit_keys:
            raise IndexMismatchError(
                f"{name} declares non-filterable metadata keys {sorted(state.non_filterable)}, "
                f"but {sorted(requested_keys)} were requested; they cannot be changed after "
                "creation (omit the argument to adopt the index's keys)"
            )
        logger.info(
            "%s declares non-filterable keys %s; using them", name, sorted(state.non_filterable)
        )
