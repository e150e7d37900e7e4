"""A LlamaIndex query over the catalog: the retriever finds products, an LLM answers from them.

Runs offline on the sample catalog with LlamaIndex's ``MockLLM`` (it answers with the prompt it
was given, so you see what a real LLM would read); pass any LlamaIndex LLM instead
(``BedrockConverse`` from llama-index-llms-bedrock-converse, for one)::

    python examples/llama_index_query.py

Needs the ``llama-index`` extra: ``pip install 'crossmodal-search[llama-index]'``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from llama_index.core.llms import LLM, MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, QueryBundle

from crossmodal_search import CrossmodalSearcher, LocalVectorStore, OfflineEmbedder
from crossmodal_search.datasets import SAMPLE_QUERIES, load_abo, write_sample_catalog
from crossmodal_search.integrations.llama_index import CrossmodalRetriever


# --8<-- [start:query]
def ask(searcher: CrossmodalSearcher, question: str, llm: LLM) -> None:
    retriever = CrossmodalRetriever(searcher, top_k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    response = engine.query(question)
    for found in response.source_nodes:
        print(f"  {found.score:.3f}  {found.node.node_id}  {found.node.metadata['title']}")
    print(str(response).splitlines()[0], "...")


def by_photo(searcher: CrossmodalSearcher, photo: Path, words: str = "") -> None:
    retriever = CrossmodalRetriever(searcher, search_mode="image", text_weight=0.6, top_k=3)
    for found in retriever.retrieve(QueryBundle(words, image_path=str(photo))):
        kind = "image" if isinstance(found.node, ImageNode) else "text"
        title = found.node.metadata["title"]
        print(f"  {found.score:.3f}  {found.node.node_id}  ({kind} node)  {title}")


# --8<-- [end:query]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_sample_catalog(Path(tmp) / "catalog")
        store = LocalVectorStore(dimension=1024)
        with CrossmodalSearcher(OfflineEmbedder(dimension=1024), store) as searcher:
            searcher.index(load_abo(root).products)
            photo = root / str(next(q.image for q in SAMPLE_QUERIES if q.name == "image"))
            print("question: a red dress for the summer")
            ask(searcher, "a red dress for the summer", MockLLM())
            print("photo of blue sneakers:")
            by_photo(searcher, photo)
            print("the same photo, 'in green':")
            by_photo(searcher, photo, "in green")


if __name__ == "__main__":
    main()
