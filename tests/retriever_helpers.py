"""Shared by tests/test_langchain.py and tests/test_llama_index.py: the sample catalog, indexed
offline, and an embedder that holds a query until the test lets it go."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossmodal_search.datasets import SAMPLE_QUERIES, load_abo, write_sample_catalog
from crossmodal_search.embeddings import EmbeddingPurpose, EmbedInput, OfflineEmbedder
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import LocalVectorStore

DIMENSION = 256
#: The sample catalog's photo query (blue sneakers) and what it and "in green" should find.
PHOTO_QUERY = next(q for q in SAMPLE_QUERIES if q.name == "image")
BOTH_QUERY = next(q for q in SAMPLE_QUERIES if q.name == "text+image")


class GatedEmbedder(OfflineEmbedder):
    """The offline embedder (through ``_embed``, the hook every ``BaseEmbedder`` backend
    writes), except that a query (not indexing) waits for ``release`` once ``gate`` is set.

    A retriever's async method that ran the search on the event loop would never let the test
    set ``release`` from that loop: the query would time out instead.
    """

    def __init__(self, dimension: int) -> None:
        super().__init__(dimension=dimension)
        self.gate = False
        self.waiting = threading.Event()
        self.release = threading.Event()

    def _embed(
        self, items: Sequence[EmbedInput], *, purpose: EmbeddingPurpose, dimension: int
    ) -> npt.NDArray[np.float32]:
        if self.gate and "RETRIEVAL" in purpose:
            self.waiting.set()
            if not self.release.wait(timeout=10):
                raise TimeoutError("the query was never released: the event loop was blocked")
        return super()._embed(items, purpose=purpose, dimension=dimension)


def sample_searcher(directory: Path) -> tuple[CrossmodalSearcher, GatedEmbedder, Path]:
    """The sample catalog written under ``directory`` and indexed into a memory store."""
    root = write_sample_catalog(directory)
    embedder = GatedEmbedder(DIMENSION)
    searcher = CrossmodalSearcher(embedder, LocalVectorStore(dimension=DIMENSION))
    report = searcher.index(load_abo(root).products)
    assert not report.failed, report.failed
    return searcher, embedder, root
