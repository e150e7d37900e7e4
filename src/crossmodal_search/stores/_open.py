"""``open_store``: one string names a store, for CLIs, config files and environment variables."""

from __future__ import annotations

from typing import Any

from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._limits import validate_bucket_name, validate_index_name
from crossmodal_search.stores._protocol import VectorStore

__all__ = ["open_store", "parse_store_spec"]

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


def open_store(spec: str, *, dimension: int | None, **kwargs: Any) -> VectorStore:
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
        **kwargs: passed to the store's constructor (``distance_metric``,
            ``non_filterable_metadata_keys``, ``limits``; ``client``/``region_name`` for S3
            Vectors; ``storage_dtype`` for local stores).

    Raises:
        ConfigurationError: an unknown or malformed spec, or ``dimension=None`` with nothing to
            read it from.
    """
    kind, first, second = parse_store_spec(spec)
    if kind == "s3vectors":
        from crossmodal_search.stores._s3vectors import S3VectorsStore

        assert first is not None and second is not None
        return S3VectorsStore(first, second, dimension=dimension, **kwargs)

    from crossmodal_search.stores._local import LocalVectorStore

    return LocalVectorStore(first, dimension=dimension, **kwargs)
