"""The LlamaIndex retriever with the real llama-index-core, on the sample catalog (offline)."""

from __future__ import annotations

import asyncio
import re
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core", reason="needs the 'llama-index' extra (llama-index-core)")

from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.integrations.llama_index import CrossmodalRetriever
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


def _ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


def test_a_text_query_returns_text_nodes_scored_like_the_search(
    searcher: CrossmodalSearcher,
) -> None:
    nodes = CrossmodalRetriever(searcher, top_k=3).retrieve("red summer dress")
    expected = searcher.search("red summer dress", top_k=3)
    assert _ids(nodes) == [r.product_id for r in expected]
    assert [n.score for n in nodes] == pytest.approx([r.score for r in expected])
    first = nodes[0].node
    assert type(first) is TextNode and first.node_id == "B0SAMPLE01"
    assert first.get_content().startswith(expected[0].title)
    md = first.metadata
    assert md["similarity"] == pytest.approx(expected[0].similarity)
    assert md["matched_type"] == "combined" and md["brand"] == "Daisy Row"
    assert md["image_path"] == expected[0].image_path
    # What an LLM reads: the product and how well it matched, not the bookkeeping.
    llm_text = first.get_content(MetadataMode.LLM)
    assert "brand: Daisy Row" in llm_text and "similarity: " in llm_text
    assert "key: " not in llm_text and "distance: " not in llm_text
    assert first.get_content(MetadataMode.EMBED) == first.get_content()


def test_a_photo_query_returns_image_nodes(searcher: CrossmodalSearcher, root: Path) -> None:
    retriever = CrossmodalRetriever(searcher, search_mode="image", top_k=3)
    photo = str(root / str(PHOTO_QUERY.image))
    nodes = retriever.retrieve(QueryBundle("", image_path=photo))
    assert _ids(nodes)[0] == PHOTO_QUERY.expected == "B0SAMPLE22"
    for item in nodes:
        node = item.node
        assert isinstance(node, ImageNode)
        assert node.image_path == node.metadata["image_path"]
        assert node.image_path is not None and Path(node.image_path).is_file()
        assert node.get_content().startswith(node.metadata["title"])
    assert _ids(retriever.search(image=Path(photo).read_bytes())) == _ids(nodes)
    plain = CrossmodalRetriever(searcher, search_mode="image", top_k=3, image_nodes=False)
    assert all(type(n.node) is TextNode for n in plain.retrieve(QueryBundle("", image_path=photo)))


def test_a_text_and_photo_query(searcher: CrossmodalSearcher, root: Path) -> None:
    retriever = CrossmodalRetriever(
        searcher, search_mode="image", text_weight=BOTH_QUERY.text_weight, top_k=3
    )
    photo = str(root / str(BOTH_QUERY.image))
    nodes = retriever.retrieve(QueryBundle(str(BOTH_QUERY.text), image_path=photo))
    assert _ids(nodes)[0] == BOTH_QUERY.expected == "B0SAMPLE21"
    assert set(nodes[0].node.metadata["part_similarities"]) == {"text", "image"}
    direct = searcher.search(
        BOTH_QUERY.text, photo, search_mode="image", text_weight=BOTH_QUERY.text_weight, top_k=3
    )
    assert _ids(nodes) == [r.product_id for r in direct]


def test_async_methods_return_what_the_sync_ones_do(
    searcher: CrossmodalSearcher, root: Path
) -> None:
    retriever = CrossmodalRetriever(searcher, search_mode="image", top_k=4)
    photo = str(root / str(BOTH_QUERY.image))

    async def run() -> list[list[NodeWithScore]]:
        return [
            await retriever.aretrieve("green running sneakers"),
            await retriever.aretrieve(QueryBundle("", image_path=photo)),
            await retriever.asearch("in green", photo),
        ]

    text, image, both = asyncio.run(run())
    assert _ids(text) == _ids(retriever.retrieve("green running sneakers"))
    assert _ids(image) == _ids(retriever.retrieve(QueryBundle("", image_path=photo)))
    assert _ids(both) == _ids(retriever.search("in green", photo))
    assert [n.score for n in both] == [n.score for n in retriever.search("in green", photo)]


@pytest.mark.parametrize("method", ["aretrieve", "asearch"])
def test_async_methods_leave_the_event_loop_free_while_they_search(
    sample: tuple[CrossmodalSearcher, GatedEmbedder, Path], method: str
) -> None:
    searcher, embedder, _ = sample
    retriever = CrossmodalRetriever(searcher, top_k=2)

    async def run() -> list[NodeWithScore]:
        search = asyncio.create_task(getattr(retriever, method)("red summer dress"))
        while not embedder.waiting.is_set():
            await asyncio.sleep(0.01)
        embedder.release.set()
        return await asyncio.wait_for(search, timeout=10)

    embedder.gate = True
    try:
        nodes = asyncio.run(run())
    finally:
        embedder.gate = False
        embedder.waiting.clear()
        embedder.release.clear()
    assert _ids(nodes) == _ids(retriever.retrieve("red summer dress"))


def test_filters_apply(searcher: CrossmodalSearcher) -> None:
    retriever = CrossmodalRetriever(searcher, filter={"product_type": "SHOES"}, top_k=10)
    shoes = retriever.retrieve("sneakers")
    assert shoes and {n.node.metadata["product_type"] for n in shoes} == {"SHOES"}
    assert _ids(retriever.search("sneakers", filter={"color": "green"})) == ["B0SAMPLE21"]


def test_a_query_engine_answers_from_the_retrieved_products(searcher: CrossmodalSearcher) -> None:
    engine = RetrieverQueryEngine.from_args(CrossmodalRetriever(searcher, top_k=2), llm=MockLLM())
    response = engine.query("red summer dress")
    assert response.source_nodes[0].node.node_id == "B0SAMPLE01"
    # MockLLM answers with its prompt: the products' text reached the LLM.
    assert "Red Summer Midi Dress" in str(response)


def test_bad_queries_and_settings_raise_clear_errors(searcher: CrossmodalSearcher) -> None:
    retriever = CrossmodalRetriever(searcher)
    with pytest.raises(InvalidInputError, match="give a text, an image, or both"):
        retriever.retrieve("  ")
    with pytest.raises(InvalidInputError, match="unknown operator"):
        retriever.search("red", filter={"color": {"$regex": "r"}})
    for settings, message in (
        ({"top_k": 0}, "top_k must be an int in 1..100"),
        ({"top_k": True}, "top_k must be an int"),
        ({"text_weight": float("nan")}, "text_weight must be a number in"),
        ({"search_mode": "photo"}, "search_mode must be one of"),
        ({"fusion": "max"}, "fusion must be one of"),
        ({"filter": {"$or": []}}, "$or"),
    ):
        with pytest.raises(InvalidInputError) as raised:
            CrossmodalRetriever(searcher, **settings)
        assert message in str(raised.value)


def test_the_query_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = runpy.run_path(
        str(Path(__file__).parent.parent / "examples" / "llama_index_query.py")
    )
    example["main"]()
    out = capsys.readouterr().out
    text, photo, both = re.split(
        r"^(?:photo of blue sneakers|the same photo, 'in green'):\n", out, flags=re.M
    )
    assert re.search(r"^  \d\.\d{3}  B0SAMPLE01  .*Red Summer Midi Dress", text, re.M)
    assert "Context information is below. ..." in text  # MockLLM's answer is its prompt
    assert re.match(r"  \d\.\d{3}  B0SAMPLE22  \(image node\)", photo)
    assert re.match(r"  \d\.\d{3}  B0SAMPLE21  \(image node\)", both)
