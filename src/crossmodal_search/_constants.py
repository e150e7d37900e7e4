"""Constants and literal types the CLI's parsers need, importing nothing heavy.

``crossmodal search --help`` builds its parser from these without importing numpy, boto3 or
pydantic. Each is re-exported where it is documented (``_types``, ``search``, ``stores``,
``datasets``), so the public names are unchanged.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

__all__ = [
    "DEFAULT_LEXICAL_WEIGHT",
    "LANGUAGES",
    "NOVA_DIMENSIONS",
    "Language",
    "SearchMode",
    "VariantSource",
]

#: Output dimensions Nova Multimodal Embeddings offers (Matryoshka-trained).
NOVA_DIMENSIONS: tuple[int, ...] = (256, 384, 1024, 3072)

#: Which stored vectors a query searches.
SearchMode: TypeAlias = Literal["text", "image", "combined", "video", "audio", "document", "all"]

#: The words' share of a hybrid score by default (tuned on the sample evaluation:
#: docs/evaluation.md, "Hybrid search").
DEFAULT_LEXICAL_WEIGHT = 0.3

#: Languages a text search configuration may name (absent: the standard analyzer).
Language: TypeAlias = Literal["en", "fr", "es", "pt", "it", "de", "nl", "zh", "ja", "ko"]
LANGUAGES: tuple[Language, ...] = get_args(Language)

#: The listing field that names a product's variant group (``load_abo(variants_from=...)``).
VariantSource: TypeAlias = Literal["model_name", "model_number"]
