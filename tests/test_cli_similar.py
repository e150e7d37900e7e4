"""``crossmodal similar`` and ``--collapse variant`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossmodal_search.cli import main
from crossmodal_search.datasets import write_sample_catalog

OFFLINE = ["--embedder", "offline", "--dimension", "384"]
PACER = ["B0SAMPLE19", "B0SAMPLE21", "B0SAMPLE23"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> str:
    catalog = write_sample_catalog(tmp_path_factory.mktemp("catalog"))
    store = f"local:{tmp_path_factory.mktemp('store') / 'vectors'}"
    argv = ["index", str(catalog), "--store", store, *OFFLINE, "--variants-from", "model_name"]
    assert main(argv) == 0
    return store


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#"))
    return [line.split() for line in lines[header + 1 :]]


def test_similar_table_and_json(indexed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["similar", "B0SAMPLE21", "--store", indexed, *OFFLINE, "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("embedder: offline embedder")
    rows = _rows(out)
    assert len(rows) == 4 and "B0SAMPLE21" not in {r[1] for r in rows}

    argv = ["similar", "B0SAMPLE21", "--store", indexed, *OFFLINE, "--json", "--top-k", "6"]
    assert main([*argv, "--filter", '{"product_type": "SHOES"}', "--mode", "image"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"] == {
        "product_id": "B0SAMPLE21",
        "mode": "image",
        "top_k": 6,
        "filter": {"product_type": "SHOES"},
        "collapse": "product",
    }
    results = payload["results"]
    ids = [r["product_id"] for r in results]
    assert len(ids) == 6 and "B0SAMPLE21" not in ids
    assert {r["metadata"]["product_type"] for r in results} == {"SHOES"}
    assert {r["matched_type"] for r in results} == {"image"}
    assert {"B0SAMPLE19", "B0SAMPLE23"} <= set(ids)  # its other colours, uncollapsed

    assert main([*argv, "--collapse", "variant", "--filter", '{"product_type": "SHOES"}']) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    found = {r["product_id"] for r in results} | {
        v["product_id"] for r in results for v in r["variants"]
    }
    assert not found & set(PACER)  # its own family is left out with it
    stride = [r for r in results if r["variant_group"] == "Stride Lab/AirMesh Runner"]
    assert len(stride) == 1 and len(stride[0]["variants"]) == 2


def test_search_collapse_variant_shows_the_other_members(
    indexed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "running sneakers", "--store", indexed, *OFFLINE, "--top-k", "3"]
    assert main([*argv, "--collapse", "variant"]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()
    shown = [row for row in rows if row.startswith("    +2 variants: ")]
    assert len(shown) == 2
    for row in shown:  # under its family's row: the other two colours with their similarity
        above = rows[rows.index(row) - 1].split()[1]
        members = [part.rstrip(",") for part in row.split(": ", 1)[1].split()[::2]]
        family = {"B0SAMPLE19", "B0SAMPLE21", "B0SAMPLE23"}
        if above not in family:
            family = {"B0SAMPLE20", "B0SAMPLE22", "B0SAMPLE24"}
        assert {above, *members} == family
    assert main([*argv, "--collapse", "variant", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"]["collapse"] == "variant"
    groups = [r["variant_group"] for r in payload["results"]]
    assert len(groups) == 3 and len(set(groups)) == 3
    assert main(argv) == 0
    assert "variants:" not in capsys.readouterr().out  # the default stays one row per product


def test_unknown_product_and_bad_arguments(
    indexed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["similar", "NOPE", "--store", indexed, *OFFLINE]) == 1
    err = capsys.readouterr().err
    assert err.startswith("crossmodal: error: no product 'NOPE' in the store")
    assert main(["similar", " ", "--store", indexed, *OFFLINE]) == 1
    assert "must not be blank" in capsys.readouterr().err
    long_id = "x" * 900
    assert main(["similar", long_id, "--store", indexed, *OFFLINE]) == 1
    assert len(capsys.readouterr().err) < 300  # the id is cut in the message
    bad_options = (["--top-k", "0"], ["--collapse", "x"], ["--mode", "smell"], ["--filter", "[]"])
    for bad in bad_options:
        with pytest.raises(SystemExit) as info:
            main(["similar", "B0SAMPLE21", "--store", indexed, *OFFLINE, *bad])
        assert info.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["similar"])
    assert "the following arguments are required: ID" in capsys.readouterr().err


def test_demo_shows_similar_products_and_families(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--embedder", "offline", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    similar = out.split("5. similar products: like B0SAMPLE21", 1)[1].split("\n6. ", 1)[0]
    rows = _rows(similar)
    ids = [row[1] for row in rows if row[0].isdigit()]
    assert len(ids) == 5 and not {"B0SAMPLE19", "B0SAMPLE21", "B0SAMPLE23"} & set(ids)
    assert "    +2 variants: " in similar  # the other brand's family, one row
    families = out.split("6. one result per family", 1)[1]
    assert families.count("    +2 variants: ") == 2
