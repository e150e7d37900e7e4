"""``GET /api/products/{id}/similar`` and ``collapse`` in ``POST /api/search``, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from crossmodal_search.datasets import load_abo, write_sample_catalog
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.testing import FakeBedrock

pytest.importorskip("fastapi", reason="needs the 'web' extra")

from fastapi.testclient import TestClient

from crossmodal_search.web import create_app
from tests.store_helpers import fake_store

DIM = 256
PACER = {"B0SAMPLE19", "B0SAMPLE21", "B0SAMPLE23"}
STRIDE = "Stride Lab/AirMesh Runner"


@pytest.fixture(scope="module", params=["local", "s3"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, FakeBedrock]]:
    root = write_sample_catalog(tmp_path_factory.mktemp("catalog"))
    bedrock = FakeBedrock()
    store = fake_store(request.param, DIM)
    searcher = CrossmodalSearcher(NovaEmbeddings(client=bedrock.client(), dimension=DIM), store)
    assert not searcher.index(load_abo(root, variants_from="model_name").products).failed
    with TestClient(create_app(searcher, image_root=root / "images" / "small")) as client:
        yield client, bedrock


def _similar(client: TestClient, product_id: str, **params: Any) -> Any:
    return client.get(f"/api/products/{quote(product_id, safe='')}/similar", params=params)


def _error(response: Any, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_
    return str(body["error"]["message"])


def test_similar_products_are_search_hits_without_an_embedding_call(
    served: tuple[TestClient, FakeBedrock],
) -> None:
    client, bedrock = served
    search = client.post("/api/search", json={"text": "green sneakers", "top_k": 1}).json()
    calls = bedrock.calls
    response = _similar(client, "B0SAMPLE21", top_k=5)
    assert response.status_code == 200, response.text
    data = response.json()
    assert bedrock.calls == calls
    assert data["query"] == {
        "product_id": "B0SAMPLE21",
        "mode": "combined",
        "top_k": 5,
        "filter": None,
        "collapse": "product",
    }
    hits = data["results"]
    ids = [h["product_id"] for h in hits]
    assert len(ids) == 5 and len(set(ids)) == 5 and "B0SAMPLE21" not in ids
    assert set(hits[0]) == set(search["results"][0])  # the same hit model as a search
    assert all(h["image_url"].startswith("/images/") for h in hits)
    assert all("image_path" not in h["metadata"] for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_similar_honours_filters_modes_and_collapse(
    served: tuple[TestClient, FakeBedrock],
) -> None:
    client, bedrock = served
    calls = bedrock.calls
    by_where = _similar(client, "B0SAMPLE21", where="product_type=SHOES", top_k=8).json()
    by_filter = _similar(
        client, "B0SAMPLE21", filter='{"product_type": "SHOES"}', top_k=8, mode="image"
    ).json()
    for data in (by_where, by_filter):
        ids = {h["product_id"] for h in data["results"]}
        assert ids and "B0SAMPLE21" not in ids
        assert {h["metadata"]["product_type"] for h in data["results"]} == {"SHOES"}
        assert PACER - {"B0SAMPLE21"} <= ids  # its own colours, one hit each
    assert by_filter["query"]["filter"] == {"product_type": "SHOES"}
    assert {h["matched_type"] for h in by_filter["results"]} == {"image"}

    collapsed = _similar(client, "B0SAMPLE21", where="product_type=SHOES", collapse="variant")
    data = collapsed.json()
    assert data["query"]["collapse"] == "variant"
    found = {h["product_id"] for h in data["results"]}
    found |= {v["product_id"] for h in data["results"] for v in h["variants"]}
    assert not found & PACER  # the product's whole family is left out
    (stride,) = [h for h in data["results"] if h["variant_group"] == STRIDE]
    assert len(stride["variants"]) == 2
    assert set(stride["variants"][0]) == {"product_id", "title", "similarity", "score"}
    assert bedrock.calls == calls


def test_search_collapses_variants_by_json_and_by_form(
    served: tuple[TestClient, FakeBedrock],
) -> None:
    client, _ = served
    body = {"text": "running sneakers", "top_k": 3, "hybrid": False}
    flat = client.post("/api/search", json=body).json()
    assert flat["query"]["collapse"] == "product"
    assert all(h["variants"] == [] for h in flat["results"])
    form = {"text": "running sneakers", "top_k": "3", "hybrid": "false", "collapse": "variant"}
    for response in (
        client.post("/api/search", json={**body, "collapse": "variant"}),
        client.post("/api/search", data=form),
    ):
        data = response.json()
        assert data["query"]["collapse"] == "variant"
        groups = [h["variant_group"] or h["product_id"] for h in data["results"]]
        assert len(groups) == 3 and len(set(groups)) == 3
        assert [len(h["variants"]) for h in data["results"][:2]] == [2, 2]
    refused = client.post("/api/search", json={**body, "collapse": "family"})
    assert "collapse" in _error(refused, 422, "InvalidInputError")


def test_unknown_products_are_404_and_bad_parameters_422(
    served: tuple[TestClient, FakeBedrock],
) -> None:
    client, bedrock = served
    calls = bedrock.calls
    assert _error(_similar(client, "NOPE"), 404, "NotFound") == "no product 'NOPE'"
    long_id = _similar(client, "x" * 60_000)
    assert len(long_id.content) < 300
    assert "(60000 characters)" in _error(long_id, 404, "NotFound")
    _error(_similar(client, "\x00"), 404, "NotFound")
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"top_k": 0}, "InvalidInputError", "top_k"),
        ({"top_k": 101}, "InvalidInputError", "top_k"),
        ({"top_k": "9" * 4500}, "InvalidInputError", "top_k"),
        ({"mode": "smell"}, "InvalidInputError", "mode"),
        ({"collapse": "family"}, "InvalidInputError", "collapse"),
        ({"colour": "red"}, "InvalidInputError", "colour"),
        ({"filter": "[1, 2]"}, "InvalidFilterError", "JSON object"),
        ({"filter": "{not json"}, "InvalidFilterError", "filter"),
        ({"filter": '{"$bad": 1}'}, "InvalidFilterError", "$bad"),
        ({"filter": '{"a":' * 2000 + "1" + "}" * 2000}, "InvalidFilterError", "filter"),
        ({"where": "no equals sign"}, "InvalidFilterError", "key=value"),
    ]
    for params, type_, needle in cases:
        message = _error(_similar(client, "B0SAMPLE21", **params), 422, type_)
        assert needle in message and len(message) < 400, message
    assert bedrock.calls == calls
    paths = client.get("/openapi.json").json()["paths"]
    similar = paths["/api/products/{product_id}/similar"]["get"]
    assert {p["name"] for p in similar["parameters"]} >= {"product_id", "top_k", "collapse"}
    assert set(similar["responses"]) >= {"200", "404", "422"}


def test_the_product_view_names_its_group(served: tuple[TestClient, FakeBedrock]) -> None:
    client, _ = served
    assert client.get("/api/products/B0SAMPLE22").json()["variant_group"] == STRIDE
    assert client.get("/api/products/B0SAMPLE01").json()["variant_group"] is None
