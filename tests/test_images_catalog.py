"""Several photos per product in real catalogs: ABO ``other_image_id``, the sample's bags, the
evaluation (main photo only against every photo, held-out photos kept out), the CLI flags and
the page's result card."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from crossmodal_search.cli import main
from crossmodal_search.datasets import load_abo, write_sample_catalog
from crossmodal_search.embeddings import NovaEmbeddings, OfflineEmbedder
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation import (
    EvalSettings,
    build_queries_from_catalog,
    compare,
    hold_out,
    read_queries,
    write_sample_evaluation,
)
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import LocalVectorStore
from crossmodal_search.testing import FakeBedrock
from tests.store_helpers import fake_store

DIM = 256
OFFLINE = ["--embedder", "offline", "--dimension", str(DIM)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_sample_catalog(tmp_path_factory.mktemp("sample"))
    write_sample_evaluation(root)
    return root


def test_load_abo_reads_other_images_in_order_up_to_the_cap(sample: Path) -> None:
    products = {p.product_id: p for p in load_abo(sample).products}
    bags = [p for p in products.values() if p.metadata.get("product_type") == "HANDBAG"]
    assert len(bags) == 6 and all(len(p.images) == 2 for p in bags)
    assert sum(len(p.images) for p in products.values()) == 12  # only the bags have more
    assert all(Path(i).is_file() and i != p.image for p in bags for i in p.images)
    capped = {p.product_id: p for p in load_abo(sample, max_images=2).products}
    assert all(capped[p.product_id].images == p.images[:1] for p in bags)
    assert all(not p.images for p in load_abo(sample, max_images=1).products)
    with pytest.raises(InvalidInputError, match="max_images"):
        load_abo(sample, max_images=0)


def test_load_abo_skips_missing_and_repeated_other_images(tmp_path: Path) -> None:
    listing = {
        "item_id": "B1",
        "item_name": [{"language_tag": "en_US", "value": "Lamp"}],
        "main_image_id": "m",
        "other_image_id": ["m", "a", "gone", "a", "b", "nocsv"],
    }
    (tmp_path / "listings" / "metadata").mkdir(parents=True)
    with gzip.open(tmp_path / "listings" / "metadata" / "listings_0.json.gz", "wt") as fh:
        fh.write(json.dumps(listing) + "\n")
    (tmp_path / "images" / "metadata").mkdir(parents=True)
    rows = ["image_id,height,width,path", "m,1,1,m.jpg", "a,1,1,a.jpg", "b,1,1,b.jpg"]
    rows.append("gone,1,1,gone.jpg")
    with gzip.open(tmp_path / "images" / "metadata" / "images.csv.gz", "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    (tmp_path / "images" / "small").mkdir(parents=True)
    for name in ("m", "a", "b"):
        (tmp_path / "images" / "small" / f"{name}.jpg").write_bytes(b"jpeg")
    (product,) = load_abo(tmp_path).products
    small = tmp_path.resolve() / "images" / "small"
    assert product.images == (str(small / "a.jpg"), str(small / "b.jpg"))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_shoppers_photo_of_a_bags_close_up_finds_the_bag_by_that_photo(
    sample: Path, kind: str
) -> None:
    store = fake_store(kind, DIM)
    embedder = NovaEmbeddings(client=FakeBedrock().client(), dimension=DIM)
    searcher = CrossmodalSearcher(embedder, store)
    products = {p.product_id: p for p in load_abo(sample).products}
    assert not searcher.index(products.values()).failed
    side = [q for q in read_queries(sample / "eval" / "queries.jsonl") if q.kind == "side photo"]
    assert len(side) == 12
    for query in side:
        (pid,) = query.relevant
        hit = searcher.search(image=query.image, search_mode="image", top_k=1)[0]
        number = int(query.id.removeprefix("photo").split("-", 1)[0])
        assert (hit.product_id, hit.key) == (pid, f"image{number}-{pid}")
        assert hit.matched_image == products[pid].images[number - 2]


def test_eval_compares_the_main_photo_only_with_every_photo(sample: Path) -> None:
    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM))
    searcher.index(load_abo(sample).products)
    queries = [q for q in read_queries(sample / "eval" / "queries.jsonl") if q.image]
    comparison = compare(
        searcher,
        queries,
        search_modes=(),
        fusions=(),
        text_weights=(),
        dimensions=(),
        hybrid=(),
        lexical_weights=(),
        k_values=(1, 10),
    )
    reports = {r.report.settings.photos: r.report for r in comparison.results}
    assert [r.sweep for r in comparison.results] == ["photos", "photos"]
    main_only, every = reports["main"], reports["all"]
    assert main_only.settings == EvalSettings(search_mode="image", photos="main", dimension=DIM)
    assert (every.stored_vectors, main_only.stored_vectors) == (50, 38)
    assert every.embed_calls == main_only.embed_calls  # the copy costs no embedding call
    side = "side photo"
    assert every.by_kind[side].metrics["recall@1"] == 1.0
    assert main_only.by_kind[side].metrics["recall@1"] < 0.5
    assert (
        every.by_query_type["image"].metrics["ndcg@10"]
        > (main_only.by_query_type["image"].metrics["ndcg@10"])
    )
    assert comparison.best == every.settings

    # A store without extra photos has nothing to compare: the sweep is left out.
    plain = CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM))
    plain.index(load_abo(sample, max_images=1).products)
    with pytest.raises(InvalidInputError, match="nothing to compare"):
        compare(
            plain,
            queries,
            search_modes=(),
            fusions=(),
            text_weights=(),
            dimensions=(),
            hybrid=(),
            lexical_weights=(),
        )


def test_held_out_photos_stay_out_of_the_index(sample: Path, tmp_path: Path) -> None:
    products = load_abo(sample).products
    queries = build_queries_from_catalog(products, own_image=False, title=False)
    assert {q.kind for q in queries} == {"held-out-image"} and len(queries) == 6
    kept = {p.product_id: p for p in hold_out(products, queries)}
    for query in queries:
        (pid,) = query.relevant
        assert query.image not in kept[pid].all_images
        assert len(kept[pid].images) == 1 and kept[pid].image is not None

    out = tmp_path / "queries.jsonl"
    assert main(["eval", "--build-from-catalog", str(sample), "-o", str(out)]) == 0
    store = tmp_path / "store"
    assert (
        main(["index", str(sample), "--store", f"local:{store}", *OFFLINE, "--hold-out", str(out)])
        == 0
    )
    held = {q.image for q in read_queries(out) if q.kind == "held-out-image"}
    with LocalVectorStore(store, read_only=True) as vectors:
        indexed = {r.metadata.get("image_source") for r in vectors.records()}
    assert held and not held & indexed


def test_cli_index_photo_flags(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"local:{tmp_path / 'v'}"
    assert (
        main(["index", str(sample), "--store", store, *OFFLINE, "--dry-run", "--max-images", "2"])
        == 0
    )
    assert "embedding calls: 82 (38 text, 44 image)" in capsys.readouterr().out
    assert main(["index", str(sample), "--store", store, *OFFLINE]) == 0
    assert "126 vectors written" in capsys.readouterr().out
    assert main(["index", str(sample), "--store", store, *OFFLINE, "--main-image-only"]) == 0
    out = capsys.readouterr().out
    assert "0 failed; 18 vectors written, 12 stale vectors deleted, 0 embedding calls" in out

    # A JSON-lines product over the cap is refused before any call; nothing is written.
    bag = next(p for p in load_abo(sample).products if p.images)
    catalog = tmp_path / "products.jsonl"
    catalog.write_text(bag.model_dump_json() + "\n", encoding="utf-8")
    other = f"local:{tmp_path / 'w'}"
    assert main(["index", str(catalog), "--store", other, *OFFLINE, "--max-images", "2"]) == 1
    assert "has 3 photos (image + images), over max_images_per_product=2" in capsys.readouterr().err
    assert not any((tmp_path / "w").glob("seg-*"))


def test_the_result_card_shows_the_photo_that_matched(sample: Path) -> None:
    pytest.importorskip("fastapi", reason="needs the 'web' extra")
    from fastapi.testclient import TestClient

    from crossmodal_search.web import create_app

    searcher = CrossmodalSearcher(OfflineEmbedder(DIM), LocalVectorStore(dimension=DIM))
    searcher.index(load_abo(sample).products)
    query = next(
        q for q in read_queries(sample / "eval" / "queries.jsonl") if q.kind == "side photo"
    )
    (pid,) = query.relevant
    assert query.image is not None
    with TestClient(create_app(searcher, image_root=sample / "images" / "small")) as client:
        photo = Path(query.image).read_bytes()
        response = client.post(
            "/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"mode": "image"}
        )
        first = response.json()["results"][0]
        assert first["product_id"] == pid
        assert first["matched_image_url"] != first["image_url"]
        shown = client.get(first["matched_image_url"])
        matched = searcher.search(image=query.image, search_mode="image", top_k=1)[0].matched_image
        assert matched is not None and shown.content == Path(matched).read_bytes()
        page = client.get("/").text
        assert "hit.matched_image_url || hit.image_url" in page
