"""Typed wire shapes of the S3 Vectors full-text API, which the installed boto3 stubs predate.

botocore has had ``queryTexts``, ``returnScores``, the ``scores`` of query results and
``UpdateMetadataConfiguration`` since 1.44.4, but the newest ``mypy-boto3-s3vectors`` stubs
(1.43.106) do not: their ``QueryVectors`` input still requires ``queryVector`` and their client has
no ``update_metadata_configuration``. The TypedDicts here copy the botocore 1.44.18 model for the
shapes :class:`~crossmodal_search.stores.S3VectorsStore` sends and reads, and
:func:`text_search_client` views a boto3 client through them, so requests stay typed instead of
``Any``. Drop them for the stubs' own types once a stub release has these members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, cast

from crossmodal_search.stores._text import IndexMode, Language, TextStatus

if TYPE_CHECKING:
    from typing import Unpack

    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = [
    "Bm25ScoreWire",
    "QueryOutputVectorWire",
    "QueryScoresWire",
    "QueryTextWire",
    "QueryVectorsRequest",
    "QueryVectorsResponse",
    "TextSearchClient",
    "TextSearchConfigurationWire",
    "UpdateMetadataConfigurationRequest",
    "text_search_client",
]


class VectorDataWire(TypedDict):
    """``VectorData``: the only member S3 Vectors has is ``float32``."""

    float32: Sequence[float]


class QueryTextWire(TypedDict):
    """``QueryText``: words to match against one searchable metadata key."""

    metadataKey: str
    text: str


class _QueryVectorsRequired(TypedDict):
    vectorBucketName: str
    indexName: str
    topK: int


class QueryVectorsRequest(_QueryVectorsRequired, total=False):
    """``QueryVectors`` input (the index addressed by bucket and index name)."""

    queryVector: VectorDataWire
    queryTexts: list[QueryTextWire]
    filter: Mapping[str, Any]
    queryMode: IndexMode
    returnMetadata: bool
    returnDistance: bool
    returnScores: bool
    nextToken: str


class Bm25ScoreWire(TypedDict):
    """``Bm25Score``: the raw BM25 score of one searchable key a result matched."""

    metadataKey: str
    score: float


class QueryScoresWire(TypedDict, total=False):
    """``QueryScores``: only with ``returnScores`` on a full-text or hybrid query."""

    fused: float
    bm25Scores: list[Bm25ScoreWire]
    vectorDistance: float


class _QueryOutputVectorRequired(TypedDict):
    key: str


class QueryOutputVectorWire(_QueryOutputVectorRequired, total=False):
    """``QueryOutputVector``: one result."""

    distance: float
    scores: QueryScoresWire
    metadata: dict[str, Any]


class _QueryVectorsResponseRequired(TypedDict):
    vectors: list[QueryOutputVectorWire]
    distanceMetric: str


class QueryVectorsResponse(_QueryVectorsResponseRequired, total=False):
    """``QueryVectors`` output; ``nextToken`` when the service split the results into pages."""

    nextToken: str


class _TextSearchConfigurationRequired(TypedDict):
    metadataKey: str


class TextSearchConfigurationWire(_TextSearchConfigurationRequired, total=False):
    """``TextSearchConfiguration``; ``status`` is output only (``GetIndex``), never sent."""

    language: Language
    status: TextStatus


class MetadataConfigurationAddWire(TypedDict):
    """``MetadataConfigurationAdd``."""

    textSearchConfigurations: list[TextSearchConfigurationWire]


class TextSearchConfigurationKeyWire(TypedDict):
    """One entry of ``MetadataConfigurationDelete.textSearchConfigurations``."""

    metadataKey: str


class MetadataConfigurationDeleteWire(TypedDict):
    """``MetadataConfigurationDelete``."""

    textSearchConfigurations: list[TextSearchConfigurationKeyWire]


class _UpdateMetadataConfigurationRequired(TypedDict):
    vectorBucketName: str
    indexName: str


class UpdateMetadataConfigurationRequest(_UpdateMetadataConfigurationRequired, total=False):
    """``UpdateMetadataConfiguration`` input: ``add`` or ``delete``, never both."""

    add: MetadataConfigurationAddWire
    delete: MetadataConfigurationDeleteWire


class UpdateMetadataConfigurationResponse(TypedDict):
    """``UpdateMetadataConfiguration`` output."""

    indexArn: str


class TextSearchClient(Protocol):
    """The two operations of a boto3 ``s3vectors`` client the stubs do not type fully."""

    def query_vectors(self, **kwargs: Unpack[QueryVectorsRequest]) -> QueryVectorsResponse:
        """``QueryVectors`` with full-text members."""
        ...

    def update_metadata_configuration(
        self, **kwargs: Unpack[UpdateMetadataConfigurationRequest]
    ) -> UpdateMetadataConfigurationResponse:
        """``UpdateMetadataConfiguration``."""
        ...


def text_search_client(client: S3VectorsClient) -> TextSearchClient:
    """``client`` typed with the full-text members (botocore >= 1.44.4 has them at runtime)."""
    return cast("TextSearchClient", client)
