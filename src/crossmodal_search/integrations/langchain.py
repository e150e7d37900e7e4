"""A LangChain retriever over a :class:`~crossmodal_search.search.CrossmodalSearcher`.

Needs the optional extra ``langchain`` (``langchain-core``)::

    from crossmodal_search.integrations.langchain import CrossmodalRetriever

    retriever = CrossmodalRetriever(searcher=searcher, top_k=3)
    retriever.invoke("red summer dress")                               # text
    retriever.invoke({"image": "photo.jpg"})                           # photo
    retriever.invoke({"text": "in green", "image": "photo.jpg"})       # both
    await retriever.ainvoke("red summer dress")                        # off the event loop

Each product found is a ``Document``: ``id`` is the product id, ``page_content`` its title and
description, ``metadata`` the product's metadata plus the result's fields (see
:func:`crossmodal_search.integrations._common.result_metadata`; docs/langchain.md lists them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from crossmodal_search.errors import ConfigurationError

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableConfig
    from langchain_core.runnables.config import run_in_executor
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ConfigurationError(
        "crossmodal_search.integrations.langchain needs the optional 'langchain' extra "
        "(langchain-core): pip install 'crossmodal-search[langchain]'"
    ) from exc
from pydantic import Field, model_validator

from crossmodal_search._types import Filter
from crossmodal_search.embeddings import ImageInput
from crossmodal_search.integrations._common import (
    MAX_TOP_K,
    CrossmodalQuery,
    SearchSettings,
    as_query,
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

__all__ = ["CrossmodalQuery", "CrossmodalRetriever", "RetrieverInput", "to_document"]

#: What the retriever takes: a text, a :class:`CrossmodalQuery`, or a mapping with ``text``,
#: ``image`` and ``filter`` (any of them).
RetrieverInput: TypeAlias = str | CrossmodalQuery | Mapping[str, Any]


def to_document(result: SearchResult) -> Document:
    """A search result as a LangChain ``Document`` (``id``: the product id)."""
    return Document(
        id=result.product_id, page_content=page_content(result), metadata=result_metadata(result)
    )


class CrossmodalRetriever(BaseRetriever):
    """Products found by text, by photo or both, as LangChain ``Document``\\ s.

    ``invoke`` takes a string (a text query), a :class:`CrossmodalQuery` or a mapping with
    ``text``, ``image`` (bytes, a local path, an ``s3://`` URI or a Pillow image) and
    ``filter``; :meth:`search` does the same with keyword arguments. ``ainvoke`` and
    :meth:`asearch` run the search on a worker thread, never on the event loop.

    Attributes:
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

    Raises:
        pydantic.ValidationError: a setting out of range or a filter outside the language (when
            the retriever is built).
        InvalidInputError: a query without text or image, or with a bad filter or image (when
            it runs; before any embedding call).
    """

    searcher: CrossmodalSearcher
    search_mode: SearchMode = "combined"
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    filter: dict[str, Any] | None = None
    text_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    fusion: Fusion = "mean"
    hybrid: bool | None = None
    lexical_weight: float = Field(default=DEFAULT_LEXICAL_WEIGHT, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_filter(self) -> CrossmodalRetriever:
        self._settings()  # validates the filter in the library's own terms
        return self

    def _settings(self) -> SearchSettings:
        return SearchSettings(
            search_mode=self.search_mode,
            top_k=self.top_k,
            filter=self.filter,
            text_weight=self.text_weight,
            fusion=self.fusion,
            hybrid=self.hybrid,
            lexical_weight=self.lexical_weight,
        )

    def _get_relevant_documents(
        self, query: RetrieverInput, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        results = self._settings().search(self.searcher, as_query(query))
        return [to_document(r) for r in results]

    async def _aget_relevant_documents(
        self, query: RetrieverInput, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        # The searcher blocks (an embedding call, a store query): a worker thread runs it.
        return await run_in_executor(
            None, self._get_relevant_documents, query, run_manager=run_manager.get_sync()
        )

    def invoke(
        self, input: RetrieverInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """The products for a text, a :class:`CrossmodalQuery` or a query mapping."""
        return super().invoke(input, config, **kwargs)  # type: ignore[arg-type]

    async def ainvoke(
        self, input: RetrieverInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """:meth:`invoke` without blocking the event loop."""
        return await super().ainvoke(input, config, **kwargs)  # type: ignore[arg-type]

    def search(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        filter: Filter | None = None,
        config: RunnableConfig | None = None,
    ) -> list[Document]:
        """The products for a text, a photo or both (``filter`` AND-ed with the retriever's)."""
        return self.invoke(CrossmodalQuery(text=text, image=image, filter=filter), config)

    async def asearch(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        filter: Filter | None = None,
        config: RunnableConfig | None = None,
    ) -> list[Document]:
        """:meth:`search` without blocking the event loop."""
        return await self.ainvoke(CrossmodalQuery(text=text, image=image, filter=filter), config)
