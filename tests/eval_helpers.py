"""A catalog whose geometry makes rankings known in advance, for evaluation and tagging tests.

Six products, one per colour: text ``"<colour> widget"`` and a square of that colour on a light
background. Query photos are circles of the same colours at another position, so only the
colour (which the offline embedder and FakeBedrock place on shared text/image features) can
match: the text ``"red"`` and a red circle both rank the red product first in every search mode.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from crossmodal_search.evaluation import LabelledQuery
from crossmodal_search.search import Product

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "green": (40, 150, 60),
    "blue": (30, 90, 210),
    "yellow": (240, 215, 40),
    "purple": (125, 50, 165),
    "orange": (240, 130, 20),
}


def pid(colour: str) -> str:
    return f"p-{colour}"


def draw(path: Path, colour: str, shape: str) -> str:
    img = Image.new("RGB", (128, 128), (245, 245, 245))
    canvas = ImageDraw.Draw(img)
    if shape == "square":
        canvas.rectangle((32, 32, 96, 96), fill=COLOURS[colour])
    else:
        canvas.ellipse((20, 40, 84, 104), fill=COLOURS[colour])
    img.save(path)
    return str(path)


def colour_products(directory: Path) -> list[Product]:
    directory.mkdir(parents=True, exist_ok=True)
    return [
        Product(
            product_id=pid(c),
            text=f"{c} widget",
            image=draw(directory / f"{c}.png", c, "square"),
            metadata={"color": c},
        )
        for c in COLOURS
    ]


def photo(directory: Path, colour: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    return draw(directory / f"photo-{colour}.png", colour, "circle")


def colour_queries(directory: Path) -> list[LabelledQuery]:
    """One text and one photo query per colour, each with its product as the only relevant."""
    queries = [
        LabelledQuery(id=f"text-{c}", text=c, relevant={pid(c): 1.0}, kind="colour-word")
        for c in COLOURS
    ]
    queries += [
        LabelledQuery(
            id=f"photo-{c}", image=photo(directory, c), relevant={pid(c): 1.0}, kind="photo"
        )
        for c in COLOURS
    ]
    return queries
