"""A deterministic, network-free embedder for tests, demos and offline development.

It is *not* a neural model. It puts texts and images into one space with hand-built features:

* a **colour block** shared by both modalities: colour words in a text ("red", "navy", "grey",
  ...) and the colour histogram of an image (pixels mapped to the nearest named colour, the
  background estimated from the border and ignored unless it is nearly the whole image, as in
  a fabric swatch) land on the same dimensions;
* a **lexical block** for text: word unigrams and character trigrams, signed feature hashing;
* a **layout block** for images: mean-centred grayscale thumbnails (a coarse 12x8 and a finer
  32x32), so images with the same composition are close.

What it can find: texts sharing words or word pieces with other texts; images that look alike
(colour + composition); images whose dominant colour is named in a text query ("red dress" ->
red images). What it cannot find: synonyms, meaning, objects or shapes named in text ("a
sneaker" does not retrieve sneaker images), other languages, anything in audio or video. Use
:class:`~crossmodal_search.embeddings.NovaEmbeddings` for real semantic search.

The vectors are laid out Matryoshka-style: the first 256 values already hold every block, the
rest refine the lexical and layout blocks, and a smaller ``dimension`` is the truncated,
re-normalised full (3072) vector, like Nova's documented behaviour.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import EmbeddingPurpose, PurposeLike, Vector
from crossmodal_search.embeddings._base import BaseEmbedder, EmbedInput
from crossmodal_search.embeddings._media import load_pil_image
from crossmodal_search.errors import InvalidInputError, UnsupportedMediaError

if TYPE_CHECKING:
    from PIL import Image

    from crossmodal_search.embeddings._protocol import ImageInput

__all__ = ["COLOUR_NAMES", "OfflineEmbedder"]

_FULL = 3072
# Layout of the full vector (first 256 values hold a bit of every block).
_COLOUR = slice(0, 32)
_LEX_A = slice(32, 160)
_LAYOUT_A = slice(160, 256)  # 12x8 thumbnail
_LEX_B = slice(256, 2048)  # 7 sub-blocks of 256
_LEX_PARTS = 8  # A + the 7 sub-blocks of B; every feature is hashed into each of them
# Share of the lexical norm^2 in A (the rest is split evenly over B's sub-blocks), so that a
# truncated vector keeps the same balance between colour and words for every text.
_LEX_A_SHARE = 0.5
_LAYOUT_B = slice(2048, 3072)  # 32x32 thumbnail
_MIN_DIMENSION = 64

#: Named colours (sRGB reference points). Order fixes the colour block's dimensions.
_PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (200, 30, 35)),
    ("orange", (240, 130, 20)),
    ("yellow", (240, 215, 40)),
    ("green", (40, 150, 60)),
    ("blue", (30, 90, 210)),
    ("purple", (125, 50, 165)),
    ("pink", (240, 140, 185)),
    ("brown", (115, 70, 35)),
    ("beige", (225, 205, 165)),
    ("black", (15, 15, 15)),
    ("white", (246, 246, 246)),
    ("grey", (128, 128, 128)),
    ("navy", (20, 30, 95)),
    ("teal", (0, 125, 125)),
    ("gold", (210, 170, 50)),
    ("silver", (190, 192, 198)),
    ("maroon", (120, 15, 30)),
    ("olive", (120, 120, 20)),
    ("turquoise", (60, 210, 200)),
    ("khaki", (190, 175, 110)),
    ("cream", (250, 240, 210)),
    ("lavender", (185, 160, 225)),
    ("magenta", (215, 30, 150)),
    ("charcoal", (55, 58, 62)),
)
COLOUR_NAMES: tuple[str, ...] = tuple(name for name, _ in _PALETTE)

#: Words mapped onto a colour dimension (synonyms and spellings).
_COLOUR_WORDS: dict[str, str] = {name: name for name in COLOUR_NAMES} | {
    "gray": "grey",
    "crimson": "red",
    "scarlet": "red",
    "burgundy": "maroon",
    "wine": "maroon",
    "violet": "purple",
    "lilac": "lavender",
    "ivory": "cream",
    "tan": "khaki",
    "camel": "khaki",
    "aqua": "turquoise",
    "cyan": "turquoise",
    "fuchsia": "magenta",
    "rose": "pink",
    "golden": "gold",
    "blush": "pink",
    "mustard": "yellow",
    "lime": "green",
    "emerald": "green",
    "indigo": "navy",
    "cobalt": "blue",
    "chocolate": "brown",
    "coffee": "brown",
    "graphite": "charcoal",
    "ebony": "black",
    "jet": "black",
    "snow": "white",
    "reddish": "red",
    "bluish": "blue",
    "greenish": "green",
}

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "this",
        "that",
        "these",
        "those",
    ]
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# Foreground (pixels unlike the border's colour) below this share of the image is noise.
_MIN_FOREGROUND = 0.005
# Below this foreground share the image is mostly "background": its colours count too, fully
# at 0 and fading out linearly up to this share; sooner for a neutral backdrop, whose chroma
# (CIE a*b* distance from grey) is under _CHROMATIC.
_MOSTLY_BACKGROUND = 0.1
_MOSTLY_BACKDROP = 0.02
_CHROMATIC = 20.0

# Block weights (squared norms add to 1 when all blocks are present).
_TEXT_COLOUR_W = 0.6
_IMAGE_COLOUR_W = 0.8


def _srgb_to_lab(rgb: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """sRGB (0-255, shape (..., 3)) to CIE L*a*b* (D65): perceptual distances for colour naming."""
    c = rgb / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    lab = np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )
    return np.asarray(lab, dtype=np.float64)


_PALETTE_LAB = _srgb_to_lab(np.array([rgb for _, rgb in _PALETTE], dtype=np.float64))


def _hash(feature: str) -> list[tuple[int, float]]:
    """One (bucket, sign) per lexical sub-block, from one digest (stable across runs)."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=4 * _LEX_PARTS).digest()
    out = []
    for i in range(_LEX_PARTS):
        v = int.from_bytes(digest[4 * i : 4 * i + 4], "little")
        out.append((v & 0x7FFFFFFF, 1.0 if v >> 31 else -1.0))
    return out


def _colour_profile(
    nearest: npt.NDArray[np.intp], mask: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.float64]:
    """Unit-norm palette profile (sqrt of the share of each named colour) of the masked pixels."""
    weights = None if mask is None else mask.astype(np.float64)
    hist = np.bincount(nearest, weights=weights, minlength=len(_PALETTE)).astype(np.float64)
    return np.asarray(np.sqrt(hist / max(hist.sum(), 1e-12)), dtype=np.float64)


def _normalise(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class OfflineEmbedder(BaseEmbedder):
    """Deterministic embeddings from lexical, colour and layout features (numpy only).

    See the module docstring for what this can and cannot find. It satisfies
    :class:`~crossmodal_search.embeddings.Embedder`; ``purpose`` is validated and otherwise
    ignored (the features do not depend on it).

    Args:
        dimension: default output dimension, 64-3072 (Nova's 256/384/1024/3072 recommended).

    Example:
        >>> emb = OfflineEmbedder(dimension=256)
        >>> emb.embed_text("red summer dress").shape
        (256,)
    """

    def __init__(self, dimension: int = 1024) -> None:
        self._dimension = self._check_dimension(dimension)

    @property
    def model_id(self) -> str:
        """``offline-colour-lexical-v2``: changes whenever the features change."""
        return "offline-colour-lexical-v2"

    @property
    def dimension(self) -> int:
        """Default output dimension."""
        return self._dimension

    def __repr__(self) -> str:
        return f"OfflineEmbedder(dimension={self._dimension})"

    def _check_dimension(self, dimension: object) -> int:
        if (
            isinstance(dimension, bool)
            or not isinstance(dimension, (int, np.integer))
            or not _MIN_DIMENSION <= int(dimension) <= _FULL
        ):
            raise InvalidInputError(
                f"dimension must be an int in {_MIN_DIMENSION}..{_FULL}, got {dimension!r}"
            )
        return int(dimension)

    def _finish(self, full: npt.NDArray[np.float64], d: int) -> Vector:
        """The first ``d`` values, unit-normalised (Matryoshka-style truncation).

        Below 160 dimensions truncation would cut off most of the word block (slots 32-159),
        leaving many texts with no words at all (an all-zero vector at 64 dimensions for a
        third of short texts): the slots cut off are folded back into the ones kept. A vector
        whose features cancel exactly gets a direction of its own instead of zeros.
        """
        head = full[:d].copy()
        if d < _LEX_A.stop:
            kept = d - _LEX_A.start
            cut = np.arange(d, _LEX_A.stop)
            np.add.at(head, _LEX_A.start + (cut - _LEX_A.start) % kept, full[cut])
        if not head.any():
            digest = hashlib.blake2b(full.tobytes(), digest_size=8).digest()
            head[_LEX_A.start + int.from_bytes(digest, "little") % (d - _LEX_A.start)] = 1.0
        out = _normalise(head)
        return out.astype(np.float32)

    def _embed(
        self, items: Sequence[EmbedInput], *, purpose: EmbeddingPurpose, dimension: int
    ) -> Vector:
        # ``purpose`` is checked by the base class; the features do not depend on it. Every
        # image is decoded before any features are computed, so a bad one fails the batch fast.
        images = [self._decode(item) if item.kind == "image" else None for item in items]
        rows = []
        for item, image in zip(items, images, strict=True):
            if image is not None:
                rows.append(self._finish(self._image_features(image), dimension))
            else:
                assert item.text is not None
                rows.append(self._finish(self._text_features(item.text), dimension))
        return np.stack(rows)

    @staticmethod
    def _decode(item: EmbedInput) -> Image.Image:
        assert item.media is not None
        if item.media.s3 is not None:
            raise UnsupportedMediaError(
                f"{item.label}: {item.media.s3.uri!r} is in S3, and the offline embedder reads "
                "local images only; download it, or embed with Amazon Nova (NovaEmbeddings, CLI "
                "--embedder nova), which reads s3:// images itself"
            )
        source = item.media.data if item.media.data is not None else item.media.image
        assert source is not None
        return load_pil_image(source, label=item.label, draft=(256, 256))

    # ---------------------------------------------------------------- text

    @staticmethod
    def _text_features(text: str) -> npt.NDArray[np.float64]:
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
        full = np.zeros(_FULL, dtype=np.float64)

        colours = np.zeros(_COLOUR.stop, dtype=np.float64)
        for w in words:
            name = _COLOUR_WORDS.get(w)
            if name is not None:
                colours[COLOUR_NAMES.index(name)] = 1.0

        counts: dict[str, float] = {}
        for w in words:
            counts["w:" + w] = counts.get("w:" + w, 0.0) + 1.0
            padded = f"#{w}#"
            for i in range(len(padded) - 2):
                key = "c:" + padded[i : i + 3]
                counts[key] = counts.get(key, 0.0) + 0.5
        a_size, b_size = _LEX_A.stop - _LEX_A.start, (_LEX_B.stop - _LEX_B.start) // 7
        parts = [np.zeros(a_size)] + [np.zeros(b_size) for _ in range(_LEX_PARTS - 1)]
        for feat, count in counts.items():
            weight = math.log1p(count)
            for part, (h, sign) in zip(parts, _hash(feat), strict=True):
                part[h % part.size] += sign * weight
        if colours.any():
            full[_COLOUR] = _normalise(colours) * _TEXT_COLOUR_W
            lex_w = math.sqrt(1 - _TEXT_COLOUR_W**2)
        else:
            lex_w = 1.0
        if counts:
            shares = [_LEX_A_SHARE] + [(1 - _LEX_A_SHARE) / (_LEX_PARTS - 1)] * (_LEX_PARTS - 1)
            scaled = [
                _normalise(p) * math.sqrt(share) for p, share in zip(parts, shares, strict=True)
            ]
            lex = np.concatenate(scaled) * lex_w
            full[_LEX_A] = lex[:a_size]
            full[_LEX_B] = lex[a_size:]
        if not full.any():  # only stopwords / punctuation: still a valid, deterministic vector
            h, _ = _hash("raw:" + text)[0]
            full[_LEX_A.start + h % a_size] = 1.0
        return full

    # ---------------------------------------------------------------- images

    @staticmethod
    def _image_features(img: Image.Image) -> npt.NDArray[np.float64]:
        from PIL import Image

        if getattr(img, "is_animated", False):
            img.seek(0)
        work = img if img.mode in ("RGB", "RGBA", "L", "LA") else img.convert("RGBA")
        if max(work.size) > 128:  # every feature below needs at most 64 px a side
            work = work.copy()
            work.thumbnail((128, 128), Image.Resampling.BILINEAR)
        # Transparent pixels count as white (how they are usually displayed).
        base = work.convert("RGBA")
        canvas = Image.new("RGBA", base.size, (255, 255, 255, 255))
        canvas.alpha_composite(base)
        flat = canvas.convert("RGB")
        small = flat.copy()
        small.thumbnail((64, 64), Image.Resampling.BILINEAR)
        rgb = np.asarray(small, dtype=np.float64)
        lab = _srgb_to_lab(rgb).reshape(-1, 3)

        # Background: if the border is mostly one colour, ignore pixels close to it.
        h, w = rgb.shape[:2]
        border = np.concatenate(
            [
                lab.reshape(h, w, 3)[0],
                lab.reshape(h, w, 3)[-1],
                lab.reshape(h, w, 3)[:, 0],
                lab.reshape(h, w, 3)[:, -1],
            ]
        )
        bg = np.median(border, axis=0)
        foreground: npt.NDArray[np.bool_] | None = None  # None: no background to ignore
        share = 1.0  # of the pixels that are not background
        if np.mean(np.linalg.norm(border - bg, axis=1) < 12.0) >= 0.6:
            foreground = np.linalg.norm(lab - bg, axis=1) >= 12.0
            share = float(foreground.mean())

        dist = np.linalg.norm(lab[:, None, :] - _PALETTE_LAB[None, :, :], axis=2)
        nearest = np.argmin(dist, axis=1)
        palette = np.zeros(len(_PALETTE), dtype=np.float64)
        if share >= _MIN_FOREGROUND:
            palette += _colour_profile(nearest, foreground)
        # When (almost) everything is background, the "background" may be the subject: a fabric
        # swatch, a close-up of a material, a solid colour. Its colours then count too, fading
        # out as the foreground grows, so that a small tag or logo on a red swatch does not make
        # it "black". A neutral border (white, grey, black: a studio backdrop) fades out sooner,
        # so that a small product photographed on it keeps its own colour.
        chromatic = float(np.hypot(bg[1], bg[2])) >= _CHROMATIC
        whole = max(0.0, 1.0 - share / (_MOSTLY_BACKGROUND if chromatic else _MOSTLY_BACKDROP))
        if whole > 0.0:
            palette += whole * _colour_profile(nearest, None)
        colours = np.zeros(_COLOUR.stop, dtype=np.float64)
        colours[: len(_PALETTE)] = palette

        gray = flat.convert("L")

        def thumb(size: tuple[int, int]) -> npt.NDArray[np.float64]:
            t = np.asarray(gray.resize(size, Image.Resampling.BILINEAR), dtype=np.float64)
            t = t.reshape(-1) - t.mean()
            return _normalise(t)

        layout = np.concatenate([thumb((12, 8)), thumb((32, 32))])
        full = np.zeros(_FULL, dtype=np.float64)
        full[_COLOUR] = _normalise(colours) * _IMAGE_COLOUR_W
        full[_LAYOUT_A] = layout[:96]
        full[_LAYOUT_B] = layout[96:]
        layout_norm = float(np.linalg.norm(full[_LAYOUT_A])) + float(
            np.linalg.norm(full[_LAYOUT_B])
        )
        if layout_norm > 0:
            lay = np.concatenate([full[_LAYOUT_A], full[_LAYOUT_B]])
            lay = _normalise(lay) * math.sqrt(1 - _IMAGE_COLOUR_W**2)
            full[_LAYOUT_A] = lay[:96]
            full[_LAYOUT_B] = lay[96:]
        return full

    def embed_document(
        self,
        page: ImageInput,
        *,
        purpose: PurposeLike = EmbeddingPurpose.GENERIC_INDEX,
        dimension: int | None = None,
    ) -> Vector:
        """Embed a document page image (same features as :meth:`embed_image`)."""
        return self.embed_image(page, purpose=purpose, dimension=dimension)
