"""Crossmodal search where agents and chains are built (each module needs its optional extra).

* :mod:`crossmodal_search.integrations.mcp`: an MCP tool server over a searcher
  (``crossmodal mcp``; extra ``mcp``), docs/mcp.md;
* :mod:`crossmodal_search.integrations.langchain`: ``CrossmodalRetriever``, a LangChain
  ``BaseRetriever`` (extra ``langchain``), docs/langchain.md;
* :mod:`crossmodal_search.integrations.llama_index`: ``CrossmodalRetriever``, a LlamaIndex
  ``BaseRetriever`` (extra ``llama-index``), docs/llama-index.md.

Importing a module whose extra is missing raises :class:`~crossmodal_search.errors.
ConfigurationError` naming the extra to install. :class:`CrossmodalQuery` (a text, a photo or
both, with a filter of its own) is what both retrievers take besides a plain string.
"""

from crossmodal_search.integrations._common import CrossmodalQuery

__all__ = ["CrossmodalQuery"]
