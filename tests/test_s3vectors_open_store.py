"""open_store: one string names a store (memory, a local directory, or an S3 Vectors index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores import (
    LocalVectorStore,
    S3VectorsStore,
    VectorRecord,
    open_store,
)
from crossmodal_search.stores._open import parse_store_spec
from crossmodal_search.testing import FakeS3Vectors


@pytest.mark.parametrize("spec", ["memory:", ":memory:", "memory"])
def test_memory_specs_open_an_in_memory_local_store(spec: str) -> None:
    store = open_store(spec, dimension=8)
    assert isinstance(store, LocalVectorStore)
    assert store.path is None
    assert store.dimension == 8


@pytest.mark.parametrize("prefix", ["local:", ""])
def test_local_specs_open_a_persistent_store(tmp_path: Path, prefix: str) -> None:
    directory = tmp_path / "vectors"
    store = open_store(f"{prefix}{directory}", dimension=4, distance_metric="euclidean")
    assert isinstance(store, LocalVectorStore)
    store.put([VectorRecord.create("a", [1, 2, 3, 4])])
    store.close()

    reopened = open_store(f"local:{directory}", dimension=None, distance_metric="euclidean")
    assert isinstance(reopened, LocalVectorStore)
    assert (reopened.dimension, reopened.distance_metric) == (4, "euclidean")
    assert list(reopened.keys()) == ["a"]
    reopened.close()


def test_s3vectors_spec_opens_an_s3_vectors_store() -> None:
    fake = FakeS3Vectors()
    client = fake.client()
    store = open_store("s3vectors://shop-vectors/products", dimension=8, client=client)
    assert isinstance(store, S3VectorsStore)
    assert (store.bucket, store.index, store.dimension) == ("shop-vectors", "products", 8)
    store.put([VectorRecord.create("a", np.ones(8))])

    again = open_store("s3vectors://shop-vectors/products/", dimension=None, client=client)
    assert again.dimension == 8
    assert list(again.keys()) == ["a"]


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "s3vectors://shop-vectors",
        "s3vectors://shop-vectors/",
        "s3vectors:///products",
        "s3vectors://shop-vectors/products/extra",
        "s3vectors://Shop_Vectors/products",
        "s3vectors://shop-vectors/-products",
        "s3://bucket/key",
        "local:",
    ],
)
def test_malformed_specs_are_configuration_errors(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(spec, dimension=8)


def test_malformed_s3_spec_fails_before_building_a_client() -> None:
    # No credentials and no network in tests: reaching boto3 would fail differently.
    with pytest.raises(ConfigurationError, match="BUCKET/INDEX"):
        open_store("s3vectors://shop-vectors", dimension=8)


def test_parse_store_spec() -> None:
    assert parse_store_spec("memory:") == ("memory", None, None)
    assert parse_store_spec("local://data/v") == ("local", "data/v", None)
    assert parse_store_spec("./data") == ("local", "./data", None)
    assert parse_store_spec("s3vectors://a-b/c.d") == ("s3vectors", "a-b", "c.d")


def test_s3vectors_store_without_a_region_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ConfigurationError, match=r"no AWS region.*--region.*AWS_DEFAULT_REGION"):
        open_store("s3vectors://shop-vectors/products", dimension=8)


def test_an_option_of_the_other_kind_of_store_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"client= does not apply to a memory store"):
        open_store("memory:", dimension=8, client=FakeS3Vectors().client())
    with pytest.raises(ConfigurationError, match=r"storage_dtype= does not apply"):
        open_store("s3vectors://shop-vectors/products", dimension=8, storage_dtype="float16")
