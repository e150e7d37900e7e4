"""Several photos per product: each its own image vector, the hit names the photo that matched,
a photo added costs one embedding call, a photo removed loses its vector, caps refused before
any call; on the local store and on S3 Vectors (the package's fakes at the HTTP boundary)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.search import (
    CrossmodalSearcher,
    Product,
    TagVocabulary,
    load_products,
    tag_products,
)
from crossmodal_search.stores import LocalVectorStore, VectorStore
from crossmodal_search.testing import FakeBedrock
from tests.store_helpers import fake_store

DIM = 256

_SHAPES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "red-dress": ("polygon", (205, 32, 38)),
    "red-dress-back": ("polygon-wide", (205, 32, 38)),
    "blue-label": ("rectangle", (32, 84, 204)),
    "green-mug": ("ellipse", (34, 146, 62)),
    "yellow-lamp": ("triangle", (242, 202, 24)),
    "purple-bag": ("rectangle-tall", (124, 48, 166)),
    "black-shoe": ("ellipse-wide", (28, 28, 30)),
}


def _draw(name: str, *, shift: int = 0, noise: bool = False) -> Image.Image:
    shape, rgb = _SHAPES[name]
    img = Image.new("RGB", (128, 128), (244, 243, 239))
    d = ImageDraw.Draw(img)
    o = shift
    if shape == "polygon":
        d.polygon([(50 + o, 20), (78 + o, 20), (100 + o, 110), (28 + o, 110)], fill=rgb)
    elif shape == "polygon-wide":
        d.polygon([(30 + o, 30), (98 + o, 30), (118 + o, 100), (10 + o, 100)], fill=rgb)
    elif shape == "rectangle":
        d.rectangle((20 + o, 50, 108 + o, 80), fill=rgb)
    elif shape == "rectangle-tall":
        d.rectangle((40 + o, 15, 88 + o, 115), fill=rgb)
    elif shape == "ellipse":
        d.ellipse((30 + o, 30, 98 + o, 98), fill=rgb)
    elif shape == "ellipse-wide":
        d.ellipse((10 + o, 45, 118 + o, 85), fill=rgb)
    else:
        d.polygon([(64 + o, 15), (115 + o, 110), (13 + o, 110)], fill=rgb)
    if noise:
        px = img.load()
        assert px is not None
        for i in range(0, 128, 7):
            px[i, (i * 5) % 128] = (120, 120, 120)
    return img


@pytest.fixture
def photos(tmp_path: Path) -> Callable[[str], str]:
    """A catalog photo by name, written once under the test's directory."""

    def photo(name: str) -> str:
        path = tmp_path / "img" / f"{name}.png"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            _draw(name).save(path)
        return str(path)

    return photo


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest) -> tuple[FakeBedrock, VectorStore]:
    return FakeBedrock(), fake_store(request.param, DIM)


def _searcher(env: tuple[FakeBedrock, VectorStore], **kwargs: object) -> CrossmodalSearcher:
    bedrock, store = env
    embedder = NovaEmbeddings(client=bedrock.client(), dimension=DIM)
    return CrossmodalSearcher(embedder, store, **kwargs)  # type: ignore[arg-type]


def _catalog(photo: Callable[[str], str]) -> list[Product]:
    return [
        Product(
            "DRESS",
            "Summer midi dress",
            image=photo("red-dress"),
            images=[photo("red-dress-back"), photo("blue-label")],
            metadata={"kind": "dress"},
        ),
        Product("MUG", "Ceramic mug", image=photo("green-mug"), metadata={"kind": "mug"}),
        Product("LAMP", "Table lamp", image=photo("yellow-lamp"), metadata={"kind": "lamp"}),
        Product("BAG", "Tote bag", image=photo("purple-bag"), metadata={"kind": "bag"}),
        Product("SHOE", "Running shoe", image=photo("black-shoe"), metadata={"kind": "shoe"}),
    ]


def _keys(store: VectorStore) -> set[str]:
    return set(store.keys())


def test_a_side_photo_finds_its_product_and_the_hit_names_it(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str], tmp_path: Path
) -> None:
    searcher = _searcher(env)
    report = searcher.index(_catalog(photos))
    assert not report.failed and report.embed_calls == 5 * 2 + 2  # text + photo each, 2 extra
    assert {"image2-DRESS", "image3-DRESS", "image-DRESS"} <= _keys(env[1])

    # A shopper's photo of the label on the dress's side: only the side photo looks like it.
    query = tmp_path / "query-label.png"
    _draw("blue-label", shift=3, noise=True).save(query)
    hits = searcher.search(image=str(query), search_mode="image", top_k=3)
    assert hits[0].product_id == "DRESS"
    assert hits[0].matched_image == photos("blue-label")
    assert hits[0].key == "image3-DRESS" and hits[0].matched_type == "image"
    assert hits[0].image_path == photos("red-dress")  # the product's main photo, as before
    assert len({h.product_id for h in hits}) == len(hits)  # one hit per product

    # Without the side photos the dress is not what the label photo finds.
    main_only = tmp_path / "main-only"
    bedrock2 = FakeBedrock()
    plain = CrossmodalSearcher(
        NovaEmbeddings(client=bedrock2.client(), dimension=DIM),
        LocalVectorStore(dimension=DIM, path=main_only),
        main_image_only=True,
    )
    plain.index(_catalog(photos))
    assert plain.search(image=str(query), search_mode="image", top_k=1)[0].product_id != "DRESS"

    # The main photo matches as itself; a combined hit names no photo; filters reach extras.
    front = tmp_path / "query-front.png"
    _draw("red-dress", shift=2, noise=True).save(front)
    hit = searcher.search(image=str(front), search_mode="image", top_k=1)[0]
    assert (hit.product_id, hit.matched_image, hit.key) == (
        "DRESS",
        photos("red-dress"),
        "image-DRESS",
    )
    assert searcher.search(image=str(query), top_k=1)[0].matched_image is None
    filtered = searcher.search(
        image=str(query), search_mode="image", top_k=2, filter={"kind": {"$in": ["dress", "mug"]}}
    )
    assert filtered[0].product_id == "DRESS"
    assert filtered[0].matched_image == photos("blue-label")
    assert searcher.search(image=str(query), search_mode="all", top_k=1)[0].matched_image == (
        photos("blue-label")
    )


def test_adding_a_photo_costs_one_call_and_removing_one_deletes_only_its_vector(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str]
) -> None:
    bedrock, store = env
    searcher = _searcher(env)

    def dress(*extra: str) -> list[Product]:
        return [
            Product(
                "DRESS",
                "Summer midi dress",
                image=photos("red-dress"),
                images=[photos(e) for e in extra],
                metadata={"kind": "dress"},
            )
        ]

    searcher.index(dress("red-dress-back"))
    keys = _keys(store)
    assert keys == {"text-DRESS", "image-DRESS", "combined-DRESS", "image2-DRESS"}

    calls = bedrock.calls
    again = searcher.index(dress("red-dress-back"))
    assert (again.skipped_unchanged, again.embed_calls, bedrock.calls) == (1, 0, calls)

    added = searcher.index(dress("red-dress-back", "blue-label"))
    assert added.embed_calls == 1 and bedrock.calls == calls + 1
    assert added.vectors_deleted == 0
    assert _keys(store) == keys | {"image3-DRESS"}
    label = store.get(["image3-DRESS"]).records[0]
    assert label.metadata["image_source"] == photos("blue-label")
    assert label.metadata["kind"] == "dress"

    # The back photo goes: its vector is deleted; the label moves up without a call.
    removed = searcher.index(dress("blue-label"))
    assert removed.embed_calls == 0 and bedrock.calls == calls + 1
    assert removed.vectors_deleted == 1
    assert _keys(store) == keys
    moved = store.get(["image2-DRESS"]).records[0]
    assert moved.metadata["image_source"] == photos("blue-label")
    assert moved.vector == pytest.approx(label.vector, abs=1e-3)

    # Every extra photo gone: only the product's own three vectors stay.
    bare = searcher.index(dress())
    assert (bare.embed_calls, bare.vectors_deleted) == (0, 1)
    assert _keys(store) == {"text-DRESS", "image-DRESS", "combined-DRESS"}
    assert "image_count" not in store.get(["combined-DRESS"]).records[0].metadata


def test_a_store_indexed_with_one_photo_takes_extra_photos_without_re_embedding(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str]
) -> None:
    bedrock, store = env
    searcher = _searcher(env)
    catalog = _catalog(photos)
    one_photo = [p.model_copy(update={"images": ()}) for p in catalog]
    searcher.index(one_photo)
    before = {r.key: r.metadata["content_hash"] for r in store.records()}
    calls = bedrock.calls
    report = searcher.index(catalog)
    assert report.embed_calls == 2 and bedrock.calls == calls + 2  # the two new photos only
    after = {r.key: r.metadata["content_hash"] for r in store.records()}
    assert {k: after[k] for k in before} == before
    assert store.get(["combined-DRESS"]).records[0].metadata["image_count"] == 3


def test_estimate_and_dry_run_count_every_photo(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str]
) -> None:
    bedrock, store = env
    searcher = _searcher(env)
    estimate = searcher.estimate(_catalog(photos))
    assert (estimate.text_calls, estimate.image_calls) == (5, 7)
    assert estimate.vectors == 5 * 3 + 2
    sizes = sum(Path(photos(n)).stat().st_size for n in _SHAPES if n != "red-dress-back")
    assert estimate.image_bytes == sizes + Path(photos("red-dress-back")).stat().st_size
    dry = searcher.index(_catalog(photos), dry_run=True)
    assert dry.estimate == estimate and bedrock.calls == 0 and not _keys(store)
    only_main = _searcher(env, main_image_only=True).estimate(_catalog(photos))
    assert only_main.image_calls == 5


def test_photo_caps_and_main_image_only(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str]
) -> None:
    bedrock, store = env
    capped = _searcher(env, max_images_per_product=2)
    with pytest.raises(InvalidInputError, match=r"'DRESS' has 3 photos.*max_images_per_product=2"):
        capped.index(_catalog(photos))
    with pytest.raises(InvalidInputError, match="max_images_per_product=2"):
        capped.estimate(_catalog(photos))
    assert bedrock.calls == 0 and not _keys(store)

    assert not _searcher(env, max_images_per_product=3).index(_catalog(photos)).failed
    assert "image3-DRESS" in _keys(store)
    # Main photos only: the extra photos are not embedded, and those stored are deleted.
    calls = bedrock.calls
    main = _searcher(env, main_image_only=True, max_images_per_product=1)
    report = main.index(_catalog(photos))
    assert report.embed_calls == 0 and report.vectors_deleted == 2 and bedrock.calls == calls
    assert not any(k.startswith(("image2-", "image3-")) for k in _keys(store))
    with pytest.raises(ConfigurationError, match="max_images_per_product"):
        _searcher(env, max_images_per_product=0)


def test_bad_photo_lists_are_refused_before_any_call(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str], tmp_path: Path
) -> None:
    bedrock, store = env
    main = photos("red-dress")
    with pytest.raises(InvalidInputError, match=r"images\[1\] .* appears twice"):
        Product("P", "x", image=main, images=[photos("blue-label"), photos("blue-label")])
    with pytest.raises(InvalidInputError, match=r"images\[0\] repeats the main image"):
        Product("P", "x", image=main, images=[main])
    with pytest.raises(InvalidInputError, match="give the main photo as image"):
        Product("P", "x", images=[main])
    with pytest.raises(InvalidInputError, match="images"):
        Product("P", "x", image=main, images=photos("blue-label"))

    # A missing extra photo fails its product before any call; nothing of it is written.
    searcher = _searcher(env)
    missing = str(tmp_path / "nope.jpg")
    report = searcher.index(
        [
            Product("DRESS", "Summer dress", image=main, images=[photos("blue-label"), missing]),
            Product("MUG", "Ceramic mug", image=photos("green-mug")),
        ]
    )
    assert [(f.product_id, f.kind) for f in report.failed] == [("DRESS", "input")]
    assert "nope.jpg" in report.failed[0].reason
    assert bedrock.calls == 2  # the mug's text and photo
    assert not any(k.endswith("-DRESS") for k in _keys(store))


def test_delete_and_prune_remove_every_photo(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str]
) -> None:
    _, store = env
    searcher = _searcher(env)
    searcher.index(_catalog(photos))
    searcher.delete(["DRESS"])
    assert not any(k.endswith("-DRESS") for k in _keys(store))
    searcher.index(_catalog(photos))
    pruned = searcher.prune(["MUG", "LAMP", "BAG", "SHOE"])
    assert pruned.pruned == 1 and pruned.vectors_deleted == 5
    assert not any(k.endswith("-DRESS") for k in _keys(store))


def test_catalog_files_take_an_images_list(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png"):
        _draw("green-mug").save(tmp_path / "img" / name)
    line = {"product_id": "P", "text": "mug", "image": "img/a.png", "images": ["img/b.png"]}
    path = tmp_path / "products.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    (product,) = load_products(path)
    assert product.images == (str(tmp_path / "img" / "b.png"),)
    path.write_text(json.dumps({**line, "images": ["img/a.png"]}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"products\.jsonl:1: .*repeats the main image"):
        load_products(path)


@pytest.mark.parametrize("only", [None, ["DRESS"]])
def test_tags_reach_every_photo_and_survive_a_new_photo(
    env: tuple[FakeBedrock, VectorStore], photos: Callable[[str], str], only: list[str] | None
) -> None:
    bedrock, store = env
    searcher = _searcher(env)
    catalog = _catalog(photos)
    searcher.index(catalog)
    embedder = NovaEmbeddings(client=bedrock.client(), dimension=DIM)
    vocabulary = TagVocabulary.from_labels({"color": ["red", "green", "yellow"]})
    report = tag_products(store, embedder, vocabulary, top1_per_group=True, product_ids=only)
    dress = next(p for p in report.products if p.product_id == "DRESS")
    assert dress.source == "combined" and dress.tags == ["red"]
    tagged = {
        r.key: r.metadata.get("tags") for r in store.get(["image2-DRESS", "image3-DRESS"]).records
    }
    assert tagged == {"image2-DRESS": ["red"], "image3-DRESS": ["red"]}
    # A new photo is indexed with the product's tags, the others keep theirs.
    more = catalog[0].model_copy(update={"images": (*catalog[0].images, photos("green-mug"))})
    searcher.index([more, *catalog[1:]])
    found = searcher.search(
        image=photos("green-mug"), search_mode="image", top_k=5, filter={"tags": "red"}
    )
    assert [(h.product_id, h.matched_image) for h in found] == [("DRESS", photos("green-mug"))]
