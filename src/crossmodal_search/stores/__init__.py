"""Vector stores: Amazon S3 Vectors and an embedded local store, one contract for both."""

from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord
from crossmodal_search.stores._protocol import VectorStore

__all__ = ["GetResult", "QueryMatch", "VectorRecord", "VectorStore"]
