"""OfflineEmbedder: deterministic, unit-norm, and colour words meet image colours."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from crossmodal_search._types import NOVA_DIMENSIONS
from crossmodal_search.embeddings import Embedder, OfflineEmbedder
from crossmodal_search.errors import InvalidInputError, UnsupportedMediaError


def product(
    colour: tuple[int, int, int],
    box: tuple[int, int, int, int] = (60, 40, 140, 260),
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A product shot: a coloured shape on a plain background."""
    img = Image.new("RGB", (200, 300), background)
    ImageDraw.Draw(img).rectangle(box, fill=colour)
    return img


COLOURS = {
    "red": (205, 25, 30),
    "blue": (25, 80, 205),
    "green": (30, 150, 55),
    "yellow": (245, 215, 40),
    "black": (10, 10, 10),
    "pink": (245, 150, 190),
    "orange": (245, 130, 20),
    "purple": (120, 45, 160),
}


@pytest.fixture(scope="module")
def emb() -> OfflineEmbedder:
    return OfflineEmbedder()


def test_deterministic_across_instances(emb: OfflineEmbedder) -> None:
    other = OfflineEmbedder()
    np.testing.assert_array_equal(emb.embed_text("red dress"), other.embed_text("red dress"))
    img = product(COLOURS["red"])
    np.testing.assert_array_equal(emb.embed_image(img), other.embed_image(img))


@pytest.mark.parametrize("dimension", NOVA_DIMENSIONS)
def test_unit_norm_float32_at_every_nova_dimension(dimension: int) -> None:
    emb = OfflineEmbedder(dimension=dimension)
    for vec in (
        emb.embed_text("red summer dress"),
        emb.embed_text("!!!"),  # no words at all still gives a valid vector
        emb.embed_image(product(COLOURS["blue"])),
        emb.embed_image(Image.new("RGB", (10, 10), (128, 128, 128))),  # flat: no layout signal
    ):
        assert vec.dtype == np.float32 and vec.shape == (dimension,)
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
        assert np.all(np.isfinite(vec))


@pytest.mark.parametrize("colour", sorted(COLOURS))
def test_colour_image_is_nearest_its_colour_word(emb: OfflineEmbedder, colour: str) -> None:
    image = emb.embed_image(product(COLOURS[colour]))
    queries = emb.embed_texts([f"{name} dress" for name in sorted(COLOURS)])
    scores = queries @ image
    assert sorted(COLOURS)[int(np.argmax(scores))] == colour


def test_red_image_closer_to_red_dress_than_blue_dress(emb: OfflineEmbedder) -> None:
    red = emb.embed_image(product(COLOURS["red"]))
    assert float(emb.embed_text("red dress") @ red) > float(emb.embed_text("blue dress") @ red)
    assert float(emb.embed_text("Red Summer Dress!") @ red) > 0.3


def test_colour_synonyms_share_a_dimension(emb: OfflineEmbedder) -> None:
    grey = emb.embed_image(product((128, 128, 128)))
    assert float(emb.embed_text("gray") @ grey) == pytest.approx(
        float(emb.embed_text("grey") @ grey), abs=1e-6
    )
    assert float(emb.embed_text("crimson") @ emb.embed_image(product(COLOURS["red"]))) > 0.3


def test_background_does_not_drown_the_product_colour(emb: OfflineEmbedder) -> None:
    small = emb.embed_image(product(COLOURS["green"], box=(90, 130, 110, 170)))  # ~1% of pixels
    assert float(emb.embed_text("green") @ small) > float(emb.embed_text("white") @ small)


def swatch(colour: tuple[int, int, int], tag_share: float = 0.0) -> Image.Image:
    """A fabric swatch filling the frame, with a black tag covering ``tag_share`` of it."""
    img = Image.new("RGB", (200, 200), colour)
    if tag_share:
        side = round((tag_share * 200 * 200) ** 0.5)
        ImageDraw.Draw(img).rectangle((150, 150, 150 + side - 1, 150 + side - 1), fill=(15, 15, 15))
    return img


@pytest.mark.parametrize("dimension", [256, 1024, 3072])
def test_solid_colour_image_is_nearest_its_colour_word(dimension: int) -> None:
    emb = OfflineEmbedder(dimension=dimension)
    red = emb.embed_image(Image.new("RGB", (64, 64), (200, 20, 30)))
    scores = {w: float(emb.embed_text(w) @ red) for w in ("red", "blue", "green")}
    assert scores["red"] > 0.5 and scores["red"] > max(scores["blue"], scores["green"])
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 20, 30)).save(buf, format="JPEG", quality=70)
    photo = emb.embed_image(buf.getvalue())
    assert float(emb.embed_text("red") @ photo) > 0.5


@pytest.mark.parametrize("tag_share", [0.006, 0.01, 0.02, 0.05])
def test_swatch_with_a_small_tag_keeps_its_colour(emb: OfflineEmbedder, tag_share: float) -> None:
    # The border says "red background"; the tag is all that is left once it is ignored.
    vec = emb.embed_image(swatch((200, 20, 30), tag_share))
    red = float(emb.embed_text("red") @ vec)
    assert red > 0.2
    assert red > float(emb.embed_text("blue") @ vec) and red > float(emb.embed_text("green") @ vec)


def test_red_product_on_white_keeps_only_its_own_colour(emb: OfflineEmbedder) -> None:
    vec = emb.embed_image(product(COLOURS["red"]))
    words = [*sorted(COLOURS), "white"]
    scores = emb.embed_texts(words) @ vec
    assert words[int(np.argmax(scores))] == "red"
    assert float(emb.embed_text("white") @ vec) < 0.05  # the backdrop is still ignored


def test_transparent_background_counts_as_white(emb: OfflineEmbedder) -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((30, 30, 70, 70), fill=(25, 80, 205, 255))
    vec = emb.embed_image(img)
    assert float(emb.embed_text("blue") @ vec) > float(emb.embed_text("black") @ vec)


def test_text_to_text_is_lexical(emb: OfflineEmbedder) -> None:
    q = emb.embed_text("summer dress")
    close = emb.embed_text("light summer dresses for the beach")
    far = emb.embed_text("stainless steel kitchen knife")
    assert float(q @ close) > float(q @ far) + 0.2
    assert float(emb.embed_text("sneakers") @ emb.embed_text("sneaker")) > 0.5  # trigrams


def test_image_to_image_uses_layout(emb: OfflineEmbedder) -> None:
    left = emb.embed_image(product(COLOURS["red"], box=(10, 40, 90, 260)))
    left_shifted = emb.embed_image(product(COLOURS["red"], box=(16, 46, 96, 266)))
    right = emb.embed_image(product(COLOURS["red"], box=(110, 40, 190, 260)))
    assert float(left @ left_shifted) > float(left @ right) + 0.1


def test_smaller_dimension_is_truncated_and_renormalised() -> None:
    full = OfflineEmbedder(dimension=3072)
    for vec_full, vec_small in [
        (full.embed_text("red dress"), full.embed_text("red dress", dimension=256)),
        (
            full.embed_image(product(COLOURS["blue"])),
            OfflineEmbedder(dimension=384).embed_image(product(COLOURS["blue"])),
        ),
    ]:
        d = vec_small.shape[0]
        expected = vec_full[:d] / np.linalg.norm(vec_full[:d])
        np.testing.assert_allclose(vec_small, expected, atol=1e-6)


def test_colour_search_survives_truncation_to_256() -> None:
    emb = OfflineEmbedder(dimension=256)
    red = emb.embed_image(product(COLOURS["red"]))
    assert float(emb.embed_text("red dress") @ red) > float(emb.embed_text("blue dress") @ red)


def test_same_image_from_bytes_path_and_pil(emb: OfflineEmbedder, tmp_path: Path) -> None:
    img = product(COLOURS["orange"])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    path = tmp_path / "p.png"
    path.write_bytes(buf.getvalue())
    a, b, c = emb.embed_image(img), emb.embed_image(buf.getvalue()), emb.embed_image(path)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(emb.embed_document(path), c)


def test_batches_match_singles(emb: OfflineEmbedder) -> None:
    texts = ["red dress", "blue shirt", "green hat"]
    np.testing.assert_array_equal(
        emb.embed_texts(texts), np.stack([emb.embed_text(t) for t in texts])
    )
    imgs = [product(c) for c in COLOURS.values()]
    assert emb.embed_images(imgs, dimension=256).shape == (len(imgs), 256)
    assert emb.embed_texts([]).shape == (0, 1024)
    assert emb.embed_images([]).shape == (0, 1024)


@pytest.mark.parametrize("dimension", [0, 32, 3073, True, 1024.0, "1024"])
def test_bad_dimension(dimension: object) -> None:
    with pytest.raises(InvalidInputError):
        OfflineEmbedder(dimension=dimension)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        OfflineEmbedder().embed_text("a", dimension=dimension)  # type: ignore[arg-type]


def test_bad_inputs(emb: OfflineEmbedder) -> None:
    for bad in ["", "   ", None, 5]:
        with pytest.raises(InvalidInputError):
            emb.embed_text(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        emb.embed_texts("abc")
    with pytest.raises(InvalidInputError):
        emb.embed_text("a", purpose="SOMETHING")
    with pytest.raises(UnsupportedMediaError):
        emb.embed_image(b"not an image")
    with pytest.raises(UnsupportedMediaError, match="S3"):
        emb.embed_image("s3://bkt/a.png")


def test_satisfies_protocol_and_identifies_itself(emb: OfflineEmbedder) -> None:
    assert isinstance(emb, Embedder)
    assert emb.model_id.startswith("offline-") and emb.dimension == 1024
    assert "1024" in repr(emb)


@pytest.mark.parametrize("dimension", [64, 128, 256])
def test_short_texts_keep_their_words_at_small_dimensions(dimension: int) -> None:
    # Words are hashed into slots 32-159; a 64-d vector used to cut most of them off and came
    # out all zeros for a third of short texts (which a cosine store refuses).
    emb = OfflineEmbedder(dimension=dimension)
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for _ in range(500):
        text = " ".join(
            "".join(rng.choice(letters) for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(1, 2))
        )
        assert abs(float(np.linalg.norm(emb.embed_text(text))) - 1.0) < 1e-5, text
    same = emb.embed_text("red summer dress") @ emb.embed_text("dress summer red")
    other = emb.embed_text("red summer dress") @ emb.embed_text("stainless kettle")
    assert float(same) > 0.999 and float(other) < 0.5


def test_features_that_cancel_exactly_still_give_a_direction() -> None:
    # Found by the property test below: the signed hashes of "v" and "x" cancel in the first
    # 256 dimensions.
    for text in ("V:X", "v x"):
        vec = OfflineEmbedder(dimension=256).embed_text(text)
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


@settings(max_examples=150, deadline=None)
@given(text=st.text(min_size=1, max_size=200).filter(lambda t: t.strip() != ""))
def test_any_non_blank_text_gives_a_finite_unit_vector(text: str) -> None:
    vec = _HYPOTHESIS_EMBEDDER.embed_text(text)
    assert vec.shape == (256,) and np.all(np.isfinite(vec))
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


@settings(max_examples=30, deadline=None)
@given(
    w=st.integers(1, 80),
    h=st.integers(1, 80),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16"]),
    seed=st.integers(0, 2**16),
)
def test_any_image_mode_and_size_gives_a_finite_unit_vector(
    w: int, h: int, mode: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert(mode)
    vec = _HYPOTHESIS_EMBEDDER.embed_image(img)
    assert np.all(np.isfinite(vec))
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


_HYPOTHESIS_EMBEDDER = OfflineEmbedder(dimension=256)
