"""A LlamaIndex retriever over a :class:`~crossmodal_search.search.CrossmodalSearcher`.

Needs the optional extra ``llama-index`` (``llama-index-core``)::

    from llama_index.core.schema import QueryBundle

    from crossmodal_search.integrations.llama_index import CrossmodalRetriever

    retriever = CrossmodalRetriever(searcher, top_k=3)
    retriever.retrieve("red summer dress")                                       # text
    retriever.retrieve(QueryBundle("", image_path="photo.jpg"))                  # photo
    retriever.retrieve(QueryBundle("in green", image_path="photo.jpg"))          # both
    retriever.search("in green", image=photo_bytes, filter={"brand": "Pacer"})   # bytes, filter
    await retriever.aretrieve("red summer dress")                                # off the loop

Each product found is a ``NodeWithScore`` whose ``score`` is the result's ``score`` (the
similarity under the default ``fusion="mean"``). A hit on the product's photo vector is an
``ImageNode`` (its ``image_path`` set when the photo is a local file), any other hit a
``TextNode``; both hold the title and description as text and the result's fields as metadata.
"""

from __future__ import annotations

import asyncio
from typing import Any

from crossmodal_search.errors import ConfigurationError

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ConfigurationError(
        "crossmodal_search.integrations.llama_index needs the optional 'llama-index' extra "
        "(llama-index-core): pip install 'crossmodal-search[llama-index]'"
    ) from exc

from crossmodal_search._types import Filter
from crossmodal_search.embeddings import ImageInput
from crossmodal_search.integrations._common import (
    CrossmodalQuery,
    SearchSettings,
    page_content,
    result_metadata,
)
from crossmodal_search.search import (
    DEFAULT_LEXICAL_WEIGHT,
    CrossmodalSearcher,
    Fusion,
    SearchMode,
    SearchResult,
)

__all__ = ["CrossmodalQuery", "CrossmodalRetriever", "to_node"]

#: Result fields a language model gains nothing from reading (they stay in ``metadata``); the
#: title starts the node's text already.
_HIDDEN_FROM_LLM = (
    "title",
    "key",
    "distance",
    "score",
    "part_similarities",
    "word_scores",
    "segment_start",
    "segment_end",
    "segment_unit",
    "image_path",
    "source_uri",
)


def to_node(result: SearchResult, *, image_nodes: bool = True) -> NodeWithScore:
    """A search result as a ``NodeWithScore``: an ``ImageNode`` for a hit on the product's photo
    vector (with ``image_nodes``), a ``TextNode`` otherwise; ``id_`` is the product id."""
    metadata = result_metadata(result)
    hidden_from_llm = [k for k in _HIDDEN_FROM_LLM if k in metadata]
    common: dict[str, Any] = {
        "id_": result.product_id,
        "text": page_content(result),
        "metadata": metadata,
        "excluded_llm_metadata_keys": hidden_from_llm,
        # Re-embedding a node's text must not mix in the search's numbers.
        "excluded_embed_metadata_keys": list(metadata),
    }
    node: TextNode
    if image_nodes and result.matched_type == "image" and result.image_path:
        local = None if "://" in result.image_path else result.image_path
        node = ImageNode(image_path=local, **common)
    else:
        node = TextNode(**common)
    return NodeWithScore(node=node, score=result.score)


class CrossmodalRetriever(BaseRetriever):
    """Products found by text, by photo or both, as LlamaIndex ``NodeWithScore``\\ s.

    ``retrieve`` takes a string (a text query) or a ``QueryBundle`` whose ``query_str`` is the
    text (may be empty) and ``image_path`` the photo (a local path or an ``s3://`` URI); the
    bundle's ``embedding`` is ignored (the searcher embeds with the purpose each stored vector
    needs). :meth:`search` takes a photo as bytes or a Pillow image too, and a filter for one
    query. ``aretrieve`` and :meth:`asearch` run the search on a worker thread.

    Args:
        searcher: Answers the queries.
        search_mode: Which stored vectors to search (``combined``, ``text``, ``image``,
            ``all``, or a media kind).
        top_k: Products per query, 1..100.
        filter: A metadata filter applied to every query (AND-ed with a query's own).
        text_weight: Weight of the text when a query has both a text and a photo.
        fusion: ``mean`` (one query with the weighted mean vector) or ``rrf``.
        hybrid: Rank by the query's words too (BM25 over the store's full-text fields):
            ``None`` (default) when the store has them, ``True`` (required) or ``False``.
        lexical_weight: The words' share of a hybrid score, 0..1.
        image_nodes: Return an ``ImageNode`` for a hit on a product's photo vector.
        callback_manager: LlamaIndex callbacks.
        verbose: LlamaIndex's verbose flag.

    Raises:
        InvalidInputError: a setting out of range or a filter outside the language (here), or
            a query without text or image (when it runs; before any embedding call).
    """

    def __init__(
        self,
        searcher: CrossmodalSearcher,
        *,
        search_mode: SearchMode = "combined",
        top_k: int = 5,
        filter: Filter | None = None,
        text_weight: float = 0.5,
        fusion: Fusion = "mean",
        hybrid: bool | None = None,
        lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
        image_nodes: bool = True,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        self.searcher = searcher
        self.settings = SearchSettings(
            search_mode=search_mode,
            top_k=top_k,
            filter=filter,
            text_weight=text_weight,
            fusion=fusion,
            hybrid=hybrid,
            lexical_weight=lexical_weight,
        )
        self.image_nodes = image_nodes
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = CrossmodalQuery(text=query_bundle.query_str, image=query_bundle.image_path)
        return self._nodes(query)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The searcher blocks (an embedding call, a store query): a worker thread runs it.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def search(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        filter: Filter | None = None,
    ) -> list[NodeWithScore]:
        """The products for a text, a photo (bytes, path, ``s3://`` URI or Pillow image) or
        both; ``filter`` is AND-ed with the retriever's."""
        return self._nodes(CrossmodalQuery(text=text, image=image, filter=filter))

    async def asearch(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        filter: Filter | None = None,
    ) -> list[NodeWithScore]:
        """:meth:`search` without blocking the event loop."""
        query = CrossmodalQuery(text=text, image=image, filter=filter)
        return await asyncio.to_thread(self._nodes, query)

    def _nodes(self, query: CrossmodalQuery) -> list[NodeWithScore]:
        results = self.settings.search(self.searcher, query)
        return [to_node(r, image_nodes=self.image_nodes) for r in results]
