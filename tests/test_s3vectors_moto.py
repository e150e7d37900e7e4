"""S3VectorsStore's CRUD path against moto, a second implementation of the S3 Vectors API.

FakeS3Vectors is ours; moto is not. Running the same store code against moto checks that what we
send is accepted by an independent implementation (botocore serialises the real requests) and
that we cope with its answers: ``{}`` from create calls (no ARNs), ``get_vectors`` results in
insertion order with unknown keys dropped, ``get_index`` without ``metadataConfiguration``, one
unpaginated ``list_vectors`` page. moto has no ``query_vectors`` (moto 5.2), so queries are
covered by the fake only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from moto import mock_aws

from crossmodal_search.errors import IndexMismatchError, ResourceNotFoundError
from crossmodal_search.stores import S3VectorsStore, VectorRecord


@pytest.fixture
def client(fake_credentials: None) -> Iterator[Any]:
    import boto3

    with mock_aws():
        yield boto3.client("s3vectors", region_name="us-east-1")


def recs(n: int, dim: int = 8) -> list[VectorRecord]:
    rng = np.random.default_rng(0)
    return [
        VectorRecord.create(f"k{i}", rng.normal(size=dim), {"i": i, "tags": ["a", str(i % 3)]})
        for i in range(n)
    ]


def test_create_put_get_list_delete_round_trip(client: Any) -> None:
    store = S3VectorsStore("shop-vectors", "products", client=client, dimension=8)
    data = recs(650)  # two PutVectors calls

    store.put(data)

    assert sorted(store.keys()) == sorted(r.key for r in data)
    got = store.get(["k600", "missing", "k3"])  # moto answers in insertion order
    assert [r.key for r in got.records] == ["k600", "k3"]
    assert got.missing == ("missing",)
    np.testing.assert_array_equal(got.records[0].vector, data[600].vector)
    assert got.records[0].metadata == {"i": 600, "tags": ["a", "0"]}

    store.delete([f"k{i}" for i in range(600)])
    assert sorted(store.keys()) == sorted(f"k{i}" for i in range(600, 650))
    listed = {r.key: r for r in store.records()}
    np.testing.assert_array_equal(listed["k649"].vector, data[649].vector)


def test_put_is_an_upsert(client: Any) -> None:
    store = S3VectorsStore("shop-vectors", "products", client=client, dimension=8)
    store.put([VectorRecord.create("a", np.ones(8), {"v": 1})])
    store.put([VectorRecord.create("a", np.arange(1, 9), {"v": 2})])
    (record,) = store.get(["a"]).records
    assert record.metadata == {"v": 2}
    np.testing.assert_array_equal(record.vector, np.arange(1, 9, dtype=np.float32))


def test_existing_index_is_reused_and_its_dimension_read(client: Any) -> None:
    S3VectorsStore("shop-vectors", "products", client=client, dimension=16).put(recs(3, 16))

    reopened = S3VectorsStore("shop-vectors", "products", client=client)

    assert reopened.dimension == 16
    assert sorted(reopened.keys()) == ["k0", "k1", "k2"]
    with pytest.raises(IndexMismatchError):
        S3VectorsStore("shop-vectors", "products", client=client, dimension=8)


def test_existing_bucket_is_reused(client: Any) -> None:
    client.create_vector_bucket(vectorBucketName="shop-vectors")
    store = S3VectorsStore("shop-vectors", "products", client=client, dimension=8)
    store.put(recs(2))
    assert sorted(store.keys()) == ["k0", "k1"]


def test_missing_index_without_create_is_not_found(client: Any) -> None:
    with pytest.raises(ResourceNotFoundError):
        S3VectorsStore("shop-vectors", "products", client=client, dimension=8, create=False)
