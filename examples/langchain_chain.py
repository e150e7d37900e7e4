"""A LangChain chain that answers a shopper from the catalog: retriever, prompt, chat model.

The retriever finds products by the shopper's words, photo or both; the prompt puts them in
front of a chat model. Runs offline on the sample catalog: with no model given, the "model" is
a stand-in that echoes the prompt it would receive, so you see exactly what an LLM gets. Pass
any LangChain chat model instead (``ChatBedrockConverse`` from langchain-aws, for one)::

    python examples/langchain_chain.py

Needs the ``langchain`` extra: ``pip install 'crossmodal-search[langchain]'``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel

from crossmodal_search import CrossmodalSearcher, LocalVectorStore, OfflineEmbedder
from crossmodal_search.datasets import SAMPLE_QUERIES, load_abo, write_sample_catalog
from crossmodal_search.integrations.langchain import CrossmodalRetriever

# --8<-- [start:chain]
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Recommend products from this list only, by id:\n\n{products}"),
        ("human", "{question}"),
    ]
)


def format_products(docs: list[Document]) -> str:
    return "\n\n".join(
        f"[{doc.id}] similarity {doc.metadata['similarity']:.2f}\n{doc.page_content}"
        for doc in docs
    )


def to_query(inputs: dict[str, Any]) -> Any:  # the retriever takes a text, photo or both
    return {"text": inputs.get("question"), "image": inputs.get("photo")}


def shopping_chain(retriever: CrossmodalRetriever, llm: Runnable[Any, Any]) -> Runnable[Any, str]:
    find = RunnableLambda(to_query) | retriever | RunnableLambda(format_products)
    question = RunnableLambda(lambda inputs: inputs["question"])
    context = RunnableParallel(products=find, question=question)
    return context | PROMPT | llm | StrOutputParser()


# --8<-- [end:chain]


def echo_prompt(prompt: PromptValue) -> str:
    """A stand-in for a chat model: answers with the prompt it was given."""
    return "\n".join(f"[{m.type}] {m.content}" for m in prompt.to_messages())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_sample_catalog(Path(tmp) / "catalog")
        store = LocalVectorStore(dimension=1024)
        with CrossmodalSearcher(OfflineEmbedder(dimension=1024), store) as searcher:
            searcher.index(load_abo(root).products)
            # --8<-- [start:run]
            retriever = CrossmodalRetriever(searcher=searcher, top_k=3)
            chain = shopping_chain(retriever, RunnableLambda(echo_prompt))
            print(chain.invoke({"question": "a red dress for the summer"}))

            photo = root / str(next(q.image for q in SAMPLE_QUERIES if q.name == "image"))
            photo_chain = shopping_chain(
                CrossmodalRetriever(searcher=searcher, search_mode="image", text_weight=0.6),
                RunnableLambda(echo_prompt),
            )
            print(photo_chain.invoke({"question": "in green", "photo": str(photo)}))
            # --8<-- [end:run]


if __name__ == "__main__":
    main()
