"""The two stores the behaviour tests run on: local, and S3 Vectors on the in-process fake."""

from __future__ import annotations

from crossmodal_search.stores import LocalVectorStore, VectorStore
from crossmodal_search.stores._s3vectors import S3VectorsStore
from crossmodal_search.testing import FakeS3Vectors


def fake_store(kind: str, dimension: int) -> VectorStore:
    """An empty ``local`` store, or an ``s3`` one (index ``shop/products``) on a fresh fake."""
    if kind == "s3":
        return S3VectorsStore(
            "shop", "products", client=FakeS3Vectors().client(), dimension=dimension
        )
    return LocalVectorStore(dimension=dimension)
