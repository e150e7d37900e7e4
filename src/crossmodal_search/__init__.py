"""crossmodal-search: crossmodal product search over Amazon Nova embeddings and S3 Vectors.

The public API, re-exported here and loaded lazily so that ``import crossmodal_search`` (and
``crossmodal --help``) does not import boto3::

    from crossmodal_search import CrossmodalSearcher, LocalVectorStore, NovaEmbeddings, Product

    searcher = CrossmodalSearcher(NovaEmbeddings(), LocalVectorStore(dimension=1024))
    searcher.index([Product(product_id="p1", text="red summer dress", image="dress.jpg")])
    results = searcher.search(text="red dress", top_k=5)

Sub-packages are public namespaces too: ``embeddings``, ``stores``, ``search``, ``datasets``
(the ABO loader and the sample catalog), ``evaluation``, ``testing`` (fakes for your own tests),
``web`` and ``errors``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crossmodal_search._version import __version__

# name -> module that defines it. Kept in step with __all__ by tests/test_public_api.py.
_LAZY: dict[str, str] = {
    # embeddings
    "Embedder": "crossmodal_search.embeddings",
    "EmbeddingCache": "crossmodal_search.embeddings",
    "EmbeddingPurpose": "crossmodal_search.embeddings",
    "NovaEmbeddings": "crossmodal_search.embeddings",
    "OfflineEmbedder": "crossmodal_search.embeddings",
    "S3Source": "crossmodal_search.embeddings",
    "make_embedder": "crossmodal_search.embeddings",
    # stores
    "GetResult": "crossmodal_search.stores",
    "LocalVectorStore": "crossmodal_search.stores",
    "QueryMatch": "crossmodal_search.stores",
    "S3VectorsStore": "crossmodal_search.stores",
    "StoreLimits": "crossmodal_search.stores",
    "TextField": "crossmodal_search.stores",
    "TextMatch": "crossmodal_search.stores",
    "TextSearchStore": "crossmodal_search.stores",
    "VectorRecord": "crossmodal_search.stores",
    "VectorStore": "crossmodal_search.stores",
    "copy_store": "crossmodal_search.stores",
    "open_store": "crossmodal_search.stores",
    "truncate_dimension": "crossmodal_search.stores",
    # search
    "CostEstimate": "crossmodal_search.search",
    "CrossmodalSearcher": "crossmodal_search.search",
    "IngestPolicy": "crossmodal_search.search",
    "IngestReport": "crossmodal_search.search",
    "IngestStoppedError": "crossmodal_search.search",
    "ItemFailure": "crossmodal_search.search",
    "Product": "crossmodal_search.search",
    "SearchResult": "crossmodal_search.search",
    # configuration of the AWS boundary
    "RetryPolicy": "crossmodal_search._aws",
    # errors
    "AccessDeniedError": "crossmodal_search.errors",
    "ConfigurationError": "crossmodal_search.errors",
    "CrossmodalSearchError": "crossmodal_search.errors",
    "DimensionMismatchError": "crossmodal_search.errors",
    "EmbeddingJobError": "crossmodal_search.errors",
    "ForeignIndexError": "crossmodal_search.errors",
    "IndexMismatchError": "crossmodal_search.errors",
    "IngestError": "crossmodal_search.errors",
    "InvalidFilterError": "crossmodal_search.errors",
    "InvalidInputError": "crossmodal_search.errors",
    "JobTimeoutError": "crossmodal_search.errors",
    "MetadataLimitError": "crossmodal_search.errors",
    "PartialWriteError": "crossmodal_search.errors",
    "ProductNotFoundError": "crossmodal_search.errors",
    "ResourceNotFoundError": "crossmodal_search.errors",
    "RetryExhaustedError": "crossmodal_search.errors",
    "ServiceError": "crossmodal_search.errors",
    "ServiceValidationError": "crossmodal_search.errors",
    "StoreCorruptedError": "crossmodal_search.errors",
    "StoreError": "crossmodal_search.errors",
    "StoreIOError": "crossmodal_search.errors",
    "StoreLockedError": "crossmodal_search.errors",
    "TransientServiceError": "crossmodal_search.errors",
    "UnsupportedMediaError": "crossmodal_search.errors",
}

__all__ = [
    "AccessDeniedError",
    "ConfigurationError",
    "CostEstimate",
    "CrossmodalSearchError",
    "CrossmodalSearcher",
    "DimensionMismatchError",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingJobError",
    "EmbeddingPurpose",
    "ForeignIndexError",
    "GetResult",
    "IndexMismatchError",
    "IngestError",
    "IngestPolicy",
    "IngestReport",
    "IngestStoppedError",
    "InvalidFilterError",
    "InvalidInputError",
    "ItemFailure",
    "JobTimeoutError",
    "LocalVectorStore",
    "MetadataLimitError",
    "NovaEmbeddings",
    "OfflineEmbedder",
    "PartialWriteError",
    "Product",
    "ProductNotFoundError",
    "QueryMatch",
    "ResourceNotFoundError",
    "RetryExhaustedError",
    "RetryPolicy",
    "S3Source",
    "S3VectorsStore",
    "SearchResult",
    "ServiceError",
    "ServiceValidationError",
    "StoreCorruptedError",
    "StoreError",
    "StoreIOError",
    "StoreLimits",
    "StoreLockedError",
    "TextField",
    "TextMatch",
    "TextSearchStore",
    "TransientServiceError",
    "UnsupportedMediaError",
    "VectorRecord",
    "VectorStore",
    "__version__",
    "copy_store",
    "make_embedder",
    "open_store",
    "truncate_dimension",
]

if TYPE_CHECKING:
    from crossmodal_search._aws import RetryPolicy
    from crossmodal_search.embeddings import (
        Embedder,
        EmbeddingCache,
        EmbeddingPurpose,
        NovaEmbeddings,
        OfflineEmbedder,
        S3Source,
        make_embedder,
    )
    from crossmodal_search.errors import (
        AccessDeniedError,
        ConfigurationError,
        CrossmodalSearchError,
        DimensionMismatchError,
        EmbeddingJobError,
        ForeignIndexError,
        IndexMismatchError,
        IngestError,
        InvalidFilterError,
        InvalidInputError,
        JobTimeoutError,
        MetadataLimitError,
        PartialWriteError,
        ProductNotFoundError,
        ResourceNotFoundError,
        RetryExhaustedError,
        ServiceError,
        ServiceValidationError,
        StoreCorruptedError,
        StoreError,
        StoreIOError,
        StoreLockedError,
        TransientServiceError,
        UnsupportedMediaError,
    )
    from crossmodal_search.search import (
        CostEstimate,
        CrossmodalSearcher,
        IngestPolicy,
        IngestReport,
        IngestStoppedError,
        ItemFailure,
        Product,
        SearchResult,
    )
    from crossmodal_search.stores import (
        GetResult,
        LocalVectorStore,
        QueryMatch,
        S3VectorsStore,
        StoreLimits,
        TextField,
        TextMatch,
        TextSearchStore,
        VectorRecord,
        VectorStore,
        copy_store,
        open_store,
        truncate_dimension,
    )


#: Names that left the top level, with where they live now (deprecated aliases for a release).
_MOVED: dict[str, str] = {
    "load_abo": "crossmodal_search.datasets",
    "write_sample_catalog": "crossmodal_search.datasets",
}


def __getattr__(name: str) -> Any:
    moved = _MOVED.get(name)
    if moved is not None:
        import warnings

        warnings.warn(
            f"crossmodal_search.{name} moved to {moved}.{name}; the top-level name goes away "
            "in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(moved), name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crossmodal_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
