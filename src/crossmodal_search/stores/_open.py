"""``open_store``: one string names a store, for CLIs, config files and environment variables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict, cast

from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._limits import validate_bucket_name, validate_index_name
from crossmodal_search.stores._protocol import VectorStore

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_s3vectors import S3VectorsClient
    from typing_extensions import Unpack

    from crossmodal_search._aws import RetryPolicy
    from crossmodal_search._types import DistanceMetric
    from crossmodal_search.stores._ann import Accelerator, AcceleratorName
    from crossmodal_search.stores._kernels import Float16Kernel, ScanDType
    from crossmodal_search.stores._limits import StoreLimits
    from crossmodal_search.stores._local import StorageDType
    from crossmodal_search.stores._text import TextField

__all__ = ["StoreOptions", "open_store", "parse_store_spec"]


class _CommonOptions(TypedDict, total=False):
    distance_metric: DistanceMetric
    non_filterable_metadata_keys: Iterable[str]
    limits: StoreLimits | None
    text_fields: Iterable[TextField]


class _S3Options(_CommonOptions, total=False):
    client: S3VectorsClient | None
    session: boto3.Session | None
    region_name: str | None
    config: Config | None
    create: bool
    retry_policy: RetryPolicy
    max_concurrency: int
    max_request_bytes: int


class _LocalOptions(_CommonOptions, total=False):
    storage_dtype: StorageDType | None
    read_only: bool
    accelerator: AcceleratorName | Accelerator | None
    float16_kernel: Float16Kernel
    scan_dtype: ScanDType | None
    memory_map: bool | None


class StoreOptions(_S3Options, _LocalOptions, total=False):
    """The keyword options of :func:`open_store`: the store constructor's own keywords.

    ``distance_metric``, ``non_filterable_metadata_keys``, ``limits`` and ``text_fields`` apply
    to every store; ``client``, ``session``, ``region_name``, ``config``, ``create``,
    ``retry_policy``, ``max_concurrency`` and ``max_request_bytes`` to ``s3vectors://`` stores
    (:class:`~crossmodal_search.stores.S3VectorsStore`); ``storage_dtype``, ``read_only``,
    ``accelerator``, ``float16_kernel``, ``scan_dtype`` and ``memory_map`` to local and memory
    stores
    (:class:`~crossmodal_search.stores.LocalVectorStore`).
    """


_S3_ONLY = frozenset(_S3Options.__annotations__)
_LOCAL_ONLY = frozenset(_LocalOptions.__annotations__)

_MEMORY_SPECS = frozenset({"memory", "memory:", "memory://", ":memory:"})
_S3_SCHEME = "s3vectors://"
_LOCAL_SCHEME = "local:"


def parse_store_spec(spec: str) -> tuple[str, str | None, str | None]:
    """Split a store spec into ``(kind, a, b)``.

    ``("memory", None, None)``, ``("local", directory, None)`` or ``("s3vectors", bucket, index)``.

    Raises:
        ConfigurationError: the spec names no known store.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigurationError("store spec must be a non-empty string")
    spec = spec.strip()
    if spec in _MEMORY_SPECS:
        return "memory", None, None
    if spec.startswith(_S3_SCHEME):
        parts = spec[len(_S3_SCHEME) :].split("/")
        if len(parts) == 3 and parts[2] == "":
            parts = parts[:2]
        if len(parts) != 2 or not all(parts):
            raise ConfigurationError(
                f"store spec {spec!r}: expected s3vectors://BUCKET/INDEX "
                "(e.g. s3vectors://shop-vectors/products)"
            )
        try:
            return "s3vectors", validate_bucket_name(parts[0]), validate_index_name(parts[1])
        except ValueError as exc:
            raise ConfigurationError(f"store spec {spec!r}: {exc}") from exc
    if spec.startswith(_LOCAL_SCHEME):
        path = spec[len(_LOCAL_SCHEME) :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigurationError(f"store spec {spec!r}: expected local:DIRECTORY")
        return "local", path, None
    if "://" in spec:
        raise ConfigurationError(
            f"unknown store spec {spec!r}: use memory:, local:DIR, a directory path or "
            "s3vectors://BUCKET/INDEX"
        )
    return "local", spec, None


def open_store(spec: str, *, dimension: int | None, **options: Unpack[StoreOptions]) -> VectorStore:
    """Open the store named by ``spec``.

    * ``memory:`` - an in-memory ``LocalVectorStore`` (gone when the process exits);
    * ``local:DIR`` or a bare directory path - a ``LocalVectorStore`` persisted in ``DIR``;
    * ``s3vectors://BUCKET/INDEX`` - an ``S3VectorsStore`` (created when missing, unless
      ``create=False``).

    Example:
        >>> store = open_store("memory:", dimension=8)
        >>> store.dimension
        8

    Args:
        spec: the store spec.
        dimension: vector length. ``None`` reads it from an existing index or store directory
            (an error when there is none).
        **options: passed to the store's constructor (see :class:`StoreOptions`):
            ``distance_metric``, ``non_filterable_metadata_keys``, ``limits``; ``client``,
            ``region_name``, ``session``, ``create``... for S3 Vectors; ``storage_dtype``,
            ``read_only``, ``accelerator``, ``float16_kernel``, ``scan_dtype``, ``memory_map`` for
            local stores.

    Raises:
        ConfigurationError: an unknown or malformed spec, an option of the other kind of store
            (``client=`` for a local store, say), or ``dimension=None`` with nothing to read
            it from.
    """
    kind, first, second = parse_store_spec(spec)
    other = _LOCAL_ONLY - _S3_ONLY if kind == "s3vectors" else _S3_ONLY - _LOCAL_ONLY
    wrong = sorted(other.intersection(options))
    if wrong:
        names = ", ".join(f"{k}=" for k in wrong)
        raise ConfigurationError(f"store spec {spec!r}: {names} does not apply to a {kind} store")
    if kind == "s3vectors":
        from crossmodal_search.stores._s3vectors import S3VectorsStore

        assert first is not None and second is not None
        s3_options = cast("_S3Options", options)
        return S3VectorsStore(first, second, dimension=dimension, **s3_options)

    from crossmodal_search.stores._local import LocalVectorStore

    local_options = cast("_LocalOptions", options)
    return LocalVectorStore(first, dimension=dimension, **local_options)
