"""Crossmodal product search: catalogs, indexing and querying over any embedder and store."""

from crossmodal_search.search._batch_ingest import index_with_batch
from crossmodal_search.search._catalog import (
    RESERVED_METADATA_KEYS,
    AboCatalog,
    Product,
    load_abo,
    load_products,
)
from crossmodal_search.search._media_ingest import (
    MediaFailure,
    MediaIngestReport,
    MediaItem,
    index_media,
)
from crossmodal_search.search._sample import (
    SAMPLE_QUERIES,
    SampleQuery,
    load_sample_queries,
    write_sample_catalog,
)
from crossmodal_search.search._searcher import (
    CostEstimate,
    CrossmodalSearcher,
    FailureKind,
    Fusion,
    IngestPolicy,
    IngestReport,
    IngestStoppedError,
    ItemFailure,
    ProductVectorType,
    ProductView,
    SearchMode,
    SearchResult,
    SegmentUnit,
    VectorType,
)

__all__ = [
    "RESERVED_METADATA_KEYS",
    "SAMPLE_QUERIES",
    "AboCatalog",
    "CostEstimate",
    "CrossmodalSearcher",
    "FailureKind",
    "Fusion",
    "IngestPolicy",
    "IngestReport",
    "IngestStoppedError",
    "ItemFailure",
    "MediaFailure",
    "MediaIngestReport",
    "MediaItem",
    "Product",
    "ProductVectorType",
    "ProductView",
    "SampleQuery",
    "SearchMode",
    "SearchResult",
    "SegmentUnit",
    "VectorType",
    "index_media",
    "index_with_batch",
    "load_abo",
    "load_products",
    "load_sample_queries",
    "write_sample_catalog",
]
