"""Scripted 'demo videos' shared by the async-embedding and searcher media tests."""

from __future__ import annotations

from collections.abc import Callable

# What each product's demo video shows, by 5-second segment index.
KETTLE_SCENES = {
    0: "unboxing the stainless steel kettle",
    4: "filling the kettle with cold tap water",
    8: "blue led light glows while the water heats",
    12: "pouring boiling water into a teapot",
    16: "cleaning limescale with vinegar",
    20: "storing the cord in the base",
}
BLENDER_SCENES = {
    0: "unboxing the glass blender jar",
    6: "crushing ice cubes for a smoothie",
    12: "blending strawberries and banana",
    18: "rinsing the blades under the tap",
}


def scenes(table: dict[int, str]) -> Callable[[float, float], str]:
    """A segment describer for FakeBedrockJobs.add_media: the scene playing at ``start``."""

    def describe(start: float, end: float) -> str:
        index = int(start // 5)
        return f"{table[max(i for i in table if i <= index)]} step {index}"

    return describe
