"""Catalogs to index: the Amazon Berkeley Objects format and a generated sample catalog.

from crossmodal_search.datasets import load_abo, write_sample_catalog

catalog = load_abo(write_sample_catalog("sample-catalog"))
searcher.index(catalog.products)
"""

from crossmodal_search.datasets._abo import AboCatalog, VariantSource, load_abo
from crossmodal_search.datasets._sample import (
    SAMPLE_QUERIES,
    SampleQuery,
    load_sample_queries,
    write_sample_catalog,
)

__all__ = [
    "SAMPLE_QUERIES",
    "AboCatalog",
    "SampleQuery",
    "VariantSource",
    "load_abo",
    "load_sample_queries",
    "write_sample_catalog",
]
