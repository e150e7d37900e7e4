"""Crossmodal product search: the catalog model, indexing and querying over any embedder and
store, and zero-shot tagging of what is indexed."""

from crossmodal_search.search._batch_ingest import index_with_batch
from crossmodal_search.search._catalog import Product, load_products
from crossmodal_search.search._hybrid import DEFAULT_LEXICAL_WEIGHT, DEFAULT_TEXT_FIELDS
from crossmodal_search.search._ingest import IngestPolicy
from crossmodal_search.search._media_ingest import (
    MediaFailure,
    MediaIngestReport,
    MediaItem,
    index_media,
)
from crossmodal_search.search._query import Fusion, SearchMode
from crossmodal_search.search._results import (
    CostEstimate,
    FailureKind,
    IngestReport,
    IngestStoppedError,
    ItemFailure,
    MatchedBy,
    ProductView,
    SearchResult,
    VariantMatch,
)
from crossmodal_search.search._schema import (
    RESERVED_METADATA_KEYS,
    ProductVectorType,
    SegmentUnit,
    VectorType,
    image_number,
    segment_records,
)
from crossmodal_search.search._searcher import CrossmodalSearcher
from crossmodal_search.search._tagging import (
    DEFAULT_TEMPLATE,
    ProductTags,
    TaggingReport,
    TagSource,
    TagVocabulary,
    load_vocabulary,
    tag_products,
)
from crossmodal_search.search._variants import Collapse

__all__ = [
    "DEFAULT_LEXICAL_WEIGHT",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TEXT_FIELDS",
    "RESERVED_METADATA_KEYS",
    "Collapse",
    "CostEstimate",
    "CrossmodalSearcher",
    "FailureKind",
    "Fusion",
    "IngestPolicy",
    "IngestReport",
    "IngestStoppedError",
    "ItemFailure",
    "MatchedBy",
    "MediaFailure",
    "MediaIngestReport",
    "MediaItem",
    "Product",
    "ProductTags",
    "ProductVectorType",
    "ProductView",
    "SearchMode",
    "SearchResult",
    "SegmentUnit",
    "TagSource",
    "TagVocabulary",
    "TaggingReport",
    "VariantMatch",
    "VectorType",
    "image_number",
    "index_media",
    "index_with_batch",
    "load_products",
    "load_vocabulary",
    "segment_records",
    "tag_products",
]
