"""The LangChain retriever with the real langchain-core, on the sample catalog (offline)."""

from __future__ import annotations

import asyncio
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="needs the 'langchain' extra (langchain-core)")

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from pydantic import ValidationError

from crossmodal_search.errors import InvalidFilterError, InvalidInputError
from crossmodal_search.integrations import CrossmodalQuery
from crossmodal_search.integrations.langchain import CrossmodalRetriever
from crossmodal_search.search import CrossmodalSearcher
from tests.retriever_helpers import BOTH_QUERY, PHOTO_QUERY, GatedEmbedder, sample_searcher


@pytest.fixture(scope="module")
def sample(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CrossmodalSearcher, GatedEmbedder, Path]]:
    searcher, embedder, root = sample_searcher(tmp_path_factory.mktemp("catalog"))
    with searcher:
        yield searcher, embedder, root


@pytest.fixture
def searcher(sample: tuple[CrossmodalSearcher, GatedEmbedder, Path]) -> CrossmodalSearcher:
    return sample[0]


@pytest.fixture
def root(sample: tuple[CrossmodalSearcher, GatedEmbedder, Path]) -> Path:
    return sample[2]


def _ids(docs: list[Document]) -> list[str | None]:
    return [d.id for d in docs]


def test_a_text_query_returns_the_searchers_products_as_documents(
    searcher: CrossmodalSearcher,
) -> None:
    retriever = CrossmodalRetriever(searcher=searcher, top_k=3)
    docs = retriever.invoke("red summer dress")
    expected = searcher.search("red summer dress", top_k=3)
    assert _ids(docs) == [r.product_id for r in expected]
    first, hit = docs[0], expected[0]
    assert first.id == "B0SAMPLE01"
    assert first.page_content.startswith(hit.title + "\n\n")
    assert "Sleeveless A-line cut" in first.page_content
    md = first.metadata
    assert md["product_id"] == "B0SAMPLE01"
    assert md["title"] == hit.title and "Red Summer Midi Dress" in md["title"]
    assert md["similarity"] == pytest.approx(hit.similarity)
    # Hybrid search (the store has full-text fields): the words count in the score.
    assert md["score"] == pytest.approx(hit.score) and md["matched_by"] == "both"
    assert md["matched_words"] == ["red", "summer", "dress"]
    assert set(md["word_scores"]) >= {"title"}
    assert md["part_similarities"] == {"text": pytest.approx(hit.similarity)}
    assert md["matched_type"] == "combined" and md["key"] == "combined-B0SAMPLE01"
    assert md["image_path"] == hit.image_path and Path(md["image_path"]).is_file()
    assert (md["brand"], md["color"], md["product_type"]) == ("Daisy Row", ["red"], "DRESS")
    assert "segment_start" not in md  # only segment hits carry segment fields
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_a_photo_query_through_the_input_and_through_search(
    searcher: CrossmodalSearcher, root: Path
) -> None:
    retriever = CrossmodalRetriever(searcher=searcher, search_mode="image", top_k=3)
    photo = root / str(PHOTO_QUERY.image)
    by_input = retriever.invoke({"image": str(photo)})
    assert by_input[0].id == PHOTO_QUERY.expected == "B0SAMPLE22"
    assert by_input[0].metadata["matched_type"] == "image"
    assert set(by_input[0].metadata["part_similarities"]) == {"image"}
    by_bytes = retriever.search(image=photo.read_bytes())
    assert _ids(by_bytes) == _ids(by_input)
    by_query = retriever.invoke(CrossmodalQuery(image=photo))
    assert _ids(by_query) == _ids(by_input)


def test_a_text_and_photo_query(searcher: CrossmodalSearcher, root: Path) -> None:
    retriever = CrossmodalRetriever(
        searcher=searcher, search_mode="image", text_weight=BOTH_QUERY.text_weight, top_k=3
    )
    photo = str(root / str(BOTH_QUERY.image))
    docs = retriever.invoke({"text": BOTH_QUERY.text, "image": photo})
    assert docs[0].id == BOTH_QUERY.expected == "B0SAMPLE21"  # that shoe, in green
    assert set(docs[0].metadata["part_similarities"]) == {"text", "image"}
    direct = searcher.search(
        BOTH_QUERY.text, photo, search_mode="image", text_weight=BOTH_QUERY.text_weight, top_k=3
    )
    assert _ids(docs) == [r.product_id for r in direct]
    assert _ids(retriever.search(BOTH_QUERY.text, photo)) == _ids(docs)


def test_async_methods_return_what_the_sync_ones_do(
    searcher: CrossmodalSearcher, root: Path
) -> None:
    retriever = CrossmodalRetriever(searcher=searcher, search_mode="image", top_k=4)
    photo = str(root / str(BOTH_QUERY.image))

    async def run() -> list[list[Document]]:
        return [
            await retriever.ainvoke("green running sneakers"),
            await retriever.ainvoke({"image": photo}),
            await retriever.asearch("in green", photo),
        ]

    text, image, both = asyncio.run(run())
    assert text == retriever.invoke("green running sneakers")
    assert image == retriever.invoke({"image": photo})
    assert both == retriever.search("in green", photo)


def test_ainvoke_leaves_the_event_loop_free_while_it_searches(
    sample: tuple[CrossmodalSearcher, GatedEmbedder, Path],
) -> None:
    searcher, embedder, _ = sample
    retriever = CrossmodalRetriever(searcher=searcher, top_k=2)

    async def run() -> list[Document]:
        search = asyncio.create_task(retriever.ainvoke("red summer dress"))
        # The query is held in the embedder; only a free event loop gets here to release it.
        while not embedder.waiting.is_set():
            await asyncio.sleep(0.01)
        embedder.release.set()
        return await asyncio.wait_for(search, timeout=10)

    embedder.gate = True
    try:
        docs = asyncio.run(run())
    finally:
        embedder.gate = False
        embedder.waiting.clear()
        embedder.release.clear()
    assert _ids(docs) == _ids(retriever.invoke("red summer dress"))


def test_the_retrievers_filter_and_a_querys_filter_both_apply(
    searcher: CrossmodalSearcher,
) -> None:
    retriever = CrossmodalRetriever(searcher=searcher, filter={"product_type": "SHOES"}, top_k=10)
    shoes = retriever.invoke("sneakers")
    assert shoes and {d.metadata["product_type"] for d in shoes} == {"SHOES"}
    green = retriever.invoke({"text": "sneakers", "filter": {"color": "green"}})
    assert _ids(green) == ["B0SAMPLE21"]


def test_a_retriever_in_a_chain(searcher: CrossmodalSearcher) -> None:
    # LangChain types every retriever's input as str: a step handing it a query mapping says Any.
    def ask(question: dict[str, str]) -> Any:
        return {"text": question["question"]}

    def titles_of(docs: list[Document]) -> list[str]:
        return [d.metadata["title"] for d in docs]

    chain = (
        RunnableLambda(ask)
        | CrossmodalRetriever(searcher=searcher, top_k=2)
        | RunnableLambda(titles_of)
    )
    titles = chain.invoke({"question": "red summer dress"})
    assert len(titles) == 2 and "Red Summer Midi Dress" in titles[0]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("   ", "give a text, an image, or both"),
        ({}, "give a text, an image, or both"),
        ({"txt": "red"}, "unknown query keys ['txt']"),
        (42, "a query is a string"),
        ({"text": "red", "filter": {"color": {"$regex": "r"}}}, "unknown operator '$regex'"),
        ({"image": "/no/such/photo.jpg"}, "photo.jpg"),
    ],
)
def test_bad_queries_raise_clear_errors(
    searcher: CrossmodalSearcher, query: object, message: str
) -> None:
    retriever = CrossmodalRetriever(searcher=searcher)
    with pytest.raises(InvalidInputError) as raised:
        retriever.invoke(query)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_bad_settings_fail_when_the_retriever_is_built(searcher: CrossmodalSearcher) -> None:
    for settings in (
        {"top_k": 0},
        {"top_k": 101},
        {"text_weight": 1.5},
        {"search_mode": "photo"},
        {"fusion": "max"},
        {"filter": {"color": {"$regex": "r"}}},
    ):
        with pytest.raises(ValidationError):
            CrossmodalRetriever(searcher=searcher, **settings)
    with pytest.raises(InvalidFilterError):
        CrossmodalQuery(text="red", filter={"$and": "red"})


def test_the_chain_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "langchain_chain.py"))
    example["main"]()
    text, photo = capsys.readouterr().out.split("[human] a red dress for the summer\n")
    # The prompt the chat model gets: the products found, best first, then the question.
    assert text.startswith("[system] Recommend products from this list only, by id:")
    assert text.index("[B0SAMPLE01]") < text.index("[B0SAMPLE25]")
    assert "Sleeveless A-line cut" in text
    first = photo.index("[B0SAMPLE")
    assert photo[first : first + 12] == "[B0SAMPLE21]"  # the shoe, in green first
    assert photo.rstrip().endswith("[human] in green")
