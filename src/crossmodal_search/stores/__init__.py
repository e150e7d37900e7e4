"""Vector stores: Amazon S3 Vectors and an embedded local store, one contract for both."""

from typing import TYPE_CHECKING, Any

from crossmodal_search.stores._ann import (
    Accelerator,
    AcceleratorName,
    BackgroundAccelerator,
    FunnelAccelerator,
    HnswAccelerator,
    RowSource,
)
from crossmodal_search.stores._copy import CopyReport, copy_store
from crossmodal_search.stores._filter import (
    CompiledFilter,
    MetadataColumns,
    compile_filter,
    filter_mask,
    matches,
    validate_filter,
)
from crossmodal_search.stores._fulltext import ENGLISH_STOP_WORDS, analyze_text, matched_words
from crossmodal_search.stores._limits import (
    DEFAULT_NON_FILTERABLE_KEYS,
    StoreLimits,
    validate_records,
)
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.stores._matryoshka import copy_truncated, truncate_dimension
from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord
from crossmodal_search.stores._open import StoreOptions, open_store, parse_store_spec
from crossmodal_search.stores._protocol import TextSearchStore, VectorStore
from crossmodal_search.stores._recover import (
    RecoveryReport,
    SegmentCheck,
    StoreCheck,
    check_local_store,
    recover_local_store,
)
from crossmodal_search.stores._text import (
    LANGUAGES,
    MAX_TEXT_FIELDS,
    RRF_K,
    IndexMode,
    Language,
    TextField,
    TextMatch,
    TextStatus,
    validate_text_fields,
)

if TYPE_CHECKING:
    from crossmodal_search.stores._s3vectors import S3VectorsStore

__all__ = [
    "DEFAULT_NON_FILTERABLE_KEYS",
    "ENGLISH_STOP_WORDS",
    "LANGUAGES",
    "MAX_TEXT_FIELDS",
    "RRF_K",
    "Accelerator",
    "AcceleratorName",
    "BackgroundAccelerator",
    "CompiledFilter",
    "CopyReport",
    "FunnelAccelerator",
    "GetResult",
    "HnswAccelerator",
    "IndexMode",
    "Language",
    "LocalVectorStore",
    "MetadataColumns",
    "QueryMatch",
    "RecoveryReport",
    "RowSource",
    "S3VectorsStore",
    "SegmentCheck",
    "StoreCheck",
    "StoreLimits",
    "StoreOptions",
    "TextField",
    "TextMatch",
    "TextSearchStore",
    "TextStatus",
    "VectorRecord",
    "VectorStore",
    "analyze_text",
    "check_local_store",
    "compile_filter",
    "copy_store",
    "copy_truncated",
    "filter_mask",
    "matched_words",
    "matches",
    "open_store",
    "parse_store_spec",
    "recover_local_store",
    "truncate_dimension",
    "validate_filter",
    "validate_records",
    "validate_text_fields",
]


def __getattr__(name: str) -> Any:
    # S3VectorsStore imports boto3/botocore/tenacity: a local store never loads them.
    if name == "S3VectorsStore":
        from crossmodal_search.stores._s3vectors import S3VectorsStore

        globals()[name] = S3VectorsStore
        return S3VectorsStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
