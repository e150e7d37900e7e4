"""The evaluation harness end to end on a catalog whose rankings are known in advance."""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import pytest
from PIL import Image

from crossmodal_search.cli import main
from crossmodal_search.datasets import load_abo
from crossmodal_search.embeddings import NovaEmbeddings, OfflineEmbedder
from crossmodal_search.errors import ConfigurationError, InvalidInputError, UnsupportedMediaError
from crossmodal_search.evaluation import (
    Comparison,
    CountingEmbedder,
    EvalReport,
    EvalSettings,
    LabelledQuery,
    build_queries_from_catalog,
    compare,
    evaluate,
    plot_comparison,
    read_abo_other_images,
    read_queries,
    write_queries,
)
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import LocalVectorStore
from crossmodal_search.testing import FakeBedrock
from tests.eval_helpers import COLOURS, colour_products, colour_queries, photo, pid

DIM = 256


@pytest.fixture
def catalog(tmp_path):
    return colour_products(tmp_path / "catalog")


@pytest.fixture
def searcher(catalog):
    s = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), LocalVectorStore(dimension=DIM))
    assert not s.index(catalog).failed
    return s


@pytest.fixture
def queries(tmp_path):
    qs = colour_queries(tmp_path / "photos")
    qs.append(LabelledQuery(id="mislabelled", text="red", relevant={pid("blue"): 1.0}))
    qs.append(LabelledQuery(id="no-relevant", text="green", relevant={}))
    qs.append(
        LabelledQuery(
            id="blue-words-red-photo",
            text="blue",
            image=photo(tmp_path / "photos", "red"),
            relevant={pid("blue"): 1.0},
        )
    )
    return qs


def test_evaluate_known_rankings(searcher, queries):
    report = evaluate(searcher, queries, k_values=(1, 5, 10), settings=EvalSettings(text_weight=1))
    detail = {d.id: d for d in report.per_query}
    for c in COLOURS:
        assert detail[f"text-{c}"].ranked[0] == pid(c)
        assert detail[f"photo-{c}"].ranked[0] == pid(c)
    # text_weight=1: the words decide, the photo is not even embedded
    assert detail["blue-words-red-photo"].ranked[0] == pid("blue")
    assert detail["mislabelled"].ranked[0] == pid("red")
    assert len(detail["mislabelled"].ranked) == 6  # all products, fewer than k=10

    # 15 queries, one without relevant items: 14 averaged, 13 of them perfect at rank 1
    assert report.excluded_queries == ["no-relevant"]
    assert detail["no-relevant"].excluded
    overall = report.overall
    assert overall.queries == 14
    assert overall.metrics["recall@1"] == pytest.approx(13 / 14)
    assert overall.metrics["hit_rate@1"] == pytest.approx(13 / 14)
    assert overall.metrics["recall@10"] == pytest.approx(1.0)
    assert overall.metrics["precision@10"] == pytest.approx(0.1)  # 1 hit per 10 positions
    rank = detail["mislabelled"].ranked.index(pid("blue")) + 1
    assert rank > 1
    assert overall.metrics["mrr"] == pytest.approx((13 + 1 / rank) / 14)
    assert overall.metrics["ndcg@5"] == pytest.approx(
        (13 + (1 / math.log2(rank + 1) if rank <= 5 else 0)) / 14
    )

    by_type = report.by_query_type
    assert set(by_type) == {"text", "image", "text+image"}
    assert by_type["text"].queries == 7
    assert by_type["text"].metrics["recall@1"] == pytest.approx(6 / 7)
    assert by_type["image"].metrics["recall@1"] == 1.0
    assert by_type["text+image"].metrics["recall@1"] == 1.0
    assert report.by_kind["photo"].queries == 6

    # every text and photo asked for once; the photo of the w=1 query is never embedded
    assert report.embed_calls == 6 + 6 + 2 + 1
    assert report.bedrock_calls is None  # the offline embedder has no Bedrock counter
    assert report.dimension == DIM
    assert report.stored_vectors == 6  # combined vectors, one per product
    assert report.stored_bytes == 6 * DIM * 4


def test_text_weight_moves_the_text_plus_image_ranking(searcher, queries):
    tpi = [q for q in queries if q.id == "blue-words-red-photo"]
    image_only = evaluate(searcher, tpi, settings=EvalSettings(text_weight=0.0))
    assert image_only.per_query[0].ranked[0] == pid("red")
    assert image_only.metric("recall@1") == 0.0
    assert image_only.embed_calls == 1
    both = evaluate(searcher, tpi, settings=EvalSettings(text_weight=0.5))
    assert both.embed_calls == 2


def test_search_modes_and_fusion_are_passed_through(searcher, queries):
    perfect = [q for q in queries if q.id.startswith(("text-", "photo-"))]
    for mode in ("text", "image", "combined", "all"):
        report = evaluate(searcher, perfect, settings=EvalSettings(search_mode=mode))
        assert report.metric("recall@1") == 1.0, mode
        expected_vectors = 18 if mode == "all" else 6
        assert report.stored_vectors == expected_vectors
    rrf = evaluate(searcher, perfect, settings=EvalSettings(fusion="rrf"))
    assert rrf.settings.fusion == "rrf"
    assert rrf.metric("ndcg@10") == 1.0


def test_truncated_dimension_searches_a_smaller_copy(searcher, queries):
    perfect = [q for q in queries if q.id.startswith(("text-", "photo-"))]
    report = evaluate(searcher, perfect, settings=EvalSettings(dimension=64))
    assert report.dimension == 64
    assert report.stored_bytes == 6 * 64 * 4
    assert report.metric("recall@1") == 1.0  # colour lives in the first dimensions
    assert searcher.store.dimension == DIM
    assert len(list(searcher.store.records())) == 18


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k_values": ()}, InvalidInputError, "k_values must not be empty"),
        ({"k_values": (0, 5)}, InvalidInputError, "every k must be"),
        ({"k_values": (101,)}, InvalidInputError, "every k must be"),
        ({"settings": EvalSettings(dimension=512)}, InvalidInputError, "above the stored"),
    ],
)
def test_bad_arguments_fail_before_any_embedding(catalog, queries, kwargs, error, message):
    counting = CountingEmbedder(OfflineEmbedder(dimension=DIM))
    s = CrossmodalSearcher(counting, LocalVectorStore(dimension=DIM))
    s.index(catalog)
    before = counting.requested
    with pytest.raises(error, match=message):
        evaluate(s, queries, **kwargs)
    assert counting.requested == before


def test_bad_queries_fail_before_any_embedding(catalog, tmp_path):
    counting = CountingEmbedder(OfflineEmbedder(dimension=DIM))
    s = CrossmodalSearcher(counting, LocalVectorStore(dimension=DIM))
    s.index(catalog)
    before = counting.requested
    good = LabelledQuery(id="a", text="red", relevant={pid("red"): 1})
    missing = LabelledQuery(id="b", image=str(tmp_path / "nope.png"), relevant={})
    with pytest.raises(UnsupportedMediaError, match="query 'b': image file not found"):
        evaluate(s, [good, missing])
    with pytest.raises(InvalidInputError, match="duplicate query id 'a'"):
        evaluate(s, [good, good])
    with pytest.raises(InvalidInputError, match="query set is empty"):
        evaluate(s, [])
    assert counting.requested == before


def test_compare_sweeps_every_factor_and_names_the_best(searcher, queries):
    comparison = compare(searcher, queries, k_values=(1, 5), dimensions=(64, 128, 256, 512))
    assert comparison.primary_metric == "ndcg@5"
    assert comparison.dimension_method == "truncation"
    rows = {(r.sweep, r.report.settings.label) for r in comparison.results}
    sweeps = [r.sweep for r in comparison.results]
    assert sweeps.count("search_mode") == 3
    assert sweeps.count("fusion") == 2
    assert sweeps.count("text_weight") == 5
    assert sweeps.count("dimension") == 3
    assert len(rows) == len(comparison.results)
    [skipped] = comparison.skipped
    assert skipped.settings.dimension == 512
    assert "truncation only goes down" in skipped.reason

    by_dim = {r.report.dimension: r.report for r in comparison.results if r.sweep == "dimension"}
    assert sorted(by_dim) == [64, 128, 256]
    assert by_dim[64].stored_bytes == 6 * 64 * 4
    assert by_dim[256].stored_bytes == 6 * 256 * 4
    assert by_dim[64].embed_calls == by_dim[256].embed_calls  # truncation costs no call

    weights = {r.report.settings.text_weight: r.report for r in comparison.results}
    # a part with weight 0 is not embedded: one call fewer for the text+image query
    assert weights[0.0].embed_calls == weights[0.5].embed_calls - 1
    assert weights[1.0].embed_calls == weights[0.5].embed_calls - 1
    assert weights[0.0].per_query[-1].ranked[0] == pid("red")
    assert weights[1.0].per_query[-1].ranked[0] == pid("blue")

    # the named best really is best: top metric, then cheapest among equals
    reports = [r.report for r in comparison.results]
    top = max(r.metric("ndcg@5") for r in reports)
    best = comparison.best_report
    assert best.metric("ndcg@5") == pytest.approx(top)
    equals = [r for r in reports if math.isclose(r.metric("ndcg@5"), top, abs_tol=1e-12)]
    assert (best.embed_calls, best.stored_bytes) == min(
        (r.embed_calls, r.stored_bytes) for r in equals
    )
    assert comparison.best_reason.startswith("highest ndcg@5")
    assert comparison.report(EvalSettings()).dimension == DIM  # None: the stored dimension
    with pytest.raises(KeyError):
        comparison.report(EvalSettings(search_mode="all"))

    # query vectors are embedded once per input and purpose, then reused across settings
    unique_runs = {r.report.settings for r in comparison.results}
    assert (
        0 < comparison.embed_calls_made < sum(comparison.report(s).embed_calls for s in unique_runs)
    )


def test_compare_argument_errors(searcher, queries):
    with pytest.raises(InvalidInputError, match="primary_metric 'ndcg@10' is not computed"):
        compare(searcher, queries, k_values=(1, 5), primary_metric="ndcg@10")
    with pytest.raises(InvalidInputError, match="nothing to compare"):
        compare(
            searcher,
            queries,
            search_modes=(),
            fusions=(),
            text_weights=(),
            dimensions=(),
            hybrid=(),
            lexical_weights=(),
        )
    with pytest.raises(InvalidInputError, match="invalid comparison setting"):
        compare(searcher, queries, text_weights=(1.5,))
    with pytest.raises(InvalidInputError, match="every compared setting was skipped"):
        compare(
            searcher,
            queries,
            search_modes=(),
            fusions=(),
            text_weights=(),
            dimensions=(512,),
            hybrid=(),
            lexical_weights=(),
        )


def test_nova_on_fake_bedrock_counts_real_calls(catalog, queries):
    fake = FakeBedrock()
    nova = NovaEmbeddings(client=fake.client(), dimension=DIM)
    s = CrossmodalSearcher(nova, LocalVectorStore(dimension=DIM))
    assert s.index(catalog).indexed == 6
    indexed = fake.calls

    report = evaluate(s, queries, settings=EvalSettings(text_weight=1))
    assert report.bedrock_calls == fake.calls - indexed == report.embed_calls == 15
    eval_requests = fake.requests[indexed:]
    purposes = {r["singleEmbeddingParams"]["embeddingPurpose"] for r in eval_requests}
    assert purposes == {"GENERIC_RETRIEVAL"}  # combined vectors are searched
    assert report.metric("recall@1") == pytest.approx(13 / 14)

    before = fake.calls
    comparison = compare(s, queries, dimensions=(256,), text_weights=(0.5,))
    assert comparison.bedrock_calls == fake.calls - before == comparison.embed_calls_made
    purposes = {r["singleEmbeddingParams"]["embeddingPurpose"] for r in fake.requests[before:]}
    assert purposes == {"GENERIC_RETRIEVAL", "TEXT_RETRIEVAL", "IMAGE_RETRIEVAL"}
    total = sum(r.report.embed_calls for r in comparison.results)
    assert comparison.bedrock_calls < total


def _abo_fixture(root: Path) -> None:
    """Two listings in ABO layout; the first has two extra photos (other_image_id)."""
    (root / "listings" / "metadata").mkdir(parents=True)
    (root / "images" / "metadata").mkdir(parents=True)
    rows = ["image_id,height,width,path"]
    for image_id, colour in [("m1", "red"), ("m2", "blue"), ("o1", "red"), ("o2", "red")]:
        rel = f"ab/{image_id}.png"
        (root / "images" / "small" / "ab").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), COLOURS[colour]).save(root / "images" / "small" / rel)
        rows.append(f"{image_id},64,64,{rel}")
    with gzip.open(root / "images" / "metadata" / "images.csv.gz", "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    listings = [
        {
            "item_id": "R1",
            "item_name": [{"language_tag": "en_US", "value": "Red kettle"}],
            "main_image_id": "m1",
            "other_image_id": ["o1", "o2", "missing"],
        },
        {
            "item_id": "B1",
            "item_name": [{"language_tag": "en_US", "value": "Blue kettle"}],
            "main_image_id": "m2",
        },
    ]
    with gzip.open(root / "listings" / "metadata" / "listings_0.json.gz", "wt") as fh:
        fh.write("".join(json.dumps(x) + "\n" for x in listings))


def test_queries_built_from_an_abo_catalog(tmp_path):
    root = tmp_path / "abo"
    _abo_fixture(root)
    products = load_abo(root).products
    others = read_abo_other_images(root)
    assert sorted(Path(p).name for p in others["R1"]) == ["o1.png", "o2.png"]
    assert "B1" not in others

    queries = build_queries_from_catalog(products, seed=3, other_images=others)
    by_id = {q.id: q for q in queries}
    assert set(by_id) == {"R1:image", "R1:title", "R1:held-out", "B1:image", "B1:title"}
    assert by_id["R1:title"].text == "Red kettle"
    assert by_id["R1:held-out"].image in others["R1"]
    assert by_id["R1:held-out"].kind == "held-out-image"
    assert all(q.relevant == {q.id.split(":")[0]: 1.0} for q in queries)
    assert build_queries_from_catalog(products, seed=3, other_images=others) == queries
    assert len(build_queries_from_catalog(products, other_images=others, max_queries=2)) == 2
    with pytest.raises(InvalidInputError, match="max_queries"):
        build_queries_from_catalog(products, max_queries=0)

    s = CrossmodalSearcher(OfflineEmbedder(dimension=DIM), LocalVectorStore(dimension=DIM))
    s.index(products)
    report = evaluate(s, queries, settings=EvalSettings(search_mode="image"))
    assert report.by_kind["own-image"].metrics["recall@1"] == 1.0
    assert report.by_kind["held-out-image"].metrics["recall@1"] == 1.0


# ---------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_store(tmp_path, catalog):
    """A local store directory holding the colour catalog, and matching CLI options."""
    directory = tmp_path / "store"
    with LocalVectorStore(directory, dimension=DIM) as store:
        CrossmodalSearcher(OfflineEmbedder(dimension=DIM), store).index(catalog)
    return ["--store", f"local:{directory}", "--embedder", "offline", "--dimension", str(DIM)]


@pytest.fixture
def queries_file(tmp_path, queries):
    return str(write_queries(queries, tmp_path / "queries.jsonl"))


def test_cli_eval_table_names_the_best_setting(cli_store, queries_file, capsys):
    args = ["eval", queries_file, *cli_store, "--k", "1,5", "--dimensions", "64,256,512"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "15 queries (text 8, image 6, text+image 1); k = 1, 5" in out
    assert "1 queries without relevant items are not averaged" in out
    assert "Matryoshka truncation of the stored 256-d vectors" in out
    assert "ndcg@5 by query type" in out
    rows = [line for line in out.splitlines() if line.startswith(SWEEPS)]
    assert len(rows) == 3 + 2 + 5 + 2  # modes, fusions, weights, dimensions 64 and 256
    assert sum(line.endswith(" *") for line in rows) == 1  # the best row is marked
    assert "skipped dimension combined mean w=0.50 d=512" in out
    assert "best setting: " in out
    assert "type text+image" in out and "kind photo" in out


SWEEPS = ("search_mode ", "fusion ", "text_weight ", "dimension  ")


def test_cli_eval_json_and_plot(cli_store, queries_file, tmp_path, capsys):
    plot = tmp_path / "out" / "plot.png"
    args = ["eval", queries_file, *cli_store, "--json", "--plot", str(plot), "--weights", "0,1"]
    assert main([*args, "--dimensions", "64,128,256"]) == 0
    captured = capsys.readouterr()
    comparison = Comparison.model_validate_json(captured.out)  # stdout is pure JSON
    assert comparison.primary_metric == "ndcg@10"
    assert [
        r.report.settings.text_weight for r in comparison.results if r.sweep == "text_weight"
    ] == [0.0, 1.0]
    assert {r.report.dimension for r in comparison.results} == {64, 128, 256}
    assert comparison.best in {r.report.settings for r in comparison.results}
    assert "plot written to" in captured.err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(plot) as img:
        assert img.width > 600

    assert (
        main(["eval", queries_file, *cli_store, "--no-compare", "--json", "--mode", "image"]) == 0
    )
    report = EvalReport.model_validate_json(capsys.readouterr().out)
    assert report.settings.search_mode == "image"
    assert report.by_query_type["image"].metrics["recall@1"] == 1.0

    assert main(["eval", queries_file, *cli_store, "--no-compare", "--per-query", "--k", "1"]) == 0
    out = capsys.readouterr().out
    assert "setting: combined mean w=0.50 d=stored (dimension 256)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["text-red"][2] == "1"  # rank of the first relevant product
    assert rows["no-relevant"][2] == "excluded"
    assert rows["mislabelled"][3] == "p-red"  # the top result, not the labelled blue one


def test_cli_eval_usage_and_input_errors(cli_store, queries_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", *cli_store])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["eval", queries_file, *cli_store, "--no-compare", "--plot", "x.png"])
    with pytest.raises(SystemExit):
        main(["eval", queries_file, *cli_store, "--k", "0,5"])
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "none.jsonl"), *cli_store]) == 1
    assert "query file not found" in capsys.readouterr().err
    assert main(["eval", queries_file, "--store", f"local:{tmp_path / 'nothing'}"]) == 1
    assert "no index at" in capsys.readouterr().err


def test_cli_build_queries_from_abo(tmp_path, capsys):
    root = tmp_path / "abo"
    _abo_fixture(root)
    out = tmp_path / "q" / "built.jsonl"
    assert main(["eval", "--build-from-catalog", str(root), "-o", str(out), "--seed", "1"]) == 0
    assert "wrote 5 queries (held-out-image 1, own-image 2, title 2)" in capsys.readouterr().out
    assert {q.kind for q in read_queries(out)} == {"own-image", "title", "held-out-image"}
    with pytest.raises(SystemExit):
        main(["eval", "--build-from-catalog", str(root)])  # no -o


def test_cli_eval_on_the_demo_catalog(tmp_path, capsys):
    demo = tmp_path / "demo"
    args = ["eval", "--sample", str(demo), "--embedder", "offline", "--dimension", "256"]
    assert main([*args, "--k", "1,10", "--dimensions", "256"]) == 0
    out = capsys.readouterr().out
    assert (demo / "eval" / "queries.jsonl").is_file()
    assert (demo / "eval" / "tags.json").is_file()
    assert "indexed 38 sample products" in out
    assert "store: memory:" in out
    assert "112 queries (text 74, image 25, text+image 13)" in out
    assert "best setting: " in out
    assert "ndcg@10 by query kind, vector-only against hybrid search:" in out
    for group in ("type text ", "type image ", "type text+image ", "kind photo+colour "):
        assert group in out


def test_plot_needs_matplotlib_and_a_sweep(searcher, queries, tmp_path, monkeypatch):
    only_modes = compare(searcher, queries, fusions=(), text_weights=(), dimensions=())
    with pytest.raises(InvalidInputError, match="nothing to plot"):
        plot_comparison(only_modes, tmp_path / "x.png")
    weights = compare(searcher, queries, search_modes=(), fusions=(), dimensions=())
    with pytest.raises(InvalidInputError, match="metric must be"):
        plot_comparison(weights, tmp_path / "x.png", metric="mrr")
    out = plot_comparison(weights, tmp_path / "ndcg.png", metric="ndcg")
    assert out.stat().st_size > 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the plot extra is not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'crossmodal-search\[plot\]'"):
        plot_comparison(weights, tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()


def test_concurrent_queries_give_the_same_reports(searcher, queries):
    serial = compare(searcher, queries, dimensions=(64, 256), text_weights=(0.0, 0.5))
    parallel = compare(
        searcher, queries, dimensions=(64, 256), text_weights=(0.0, 0.5), max_concurrency=4
    )
    assert parallel.best == serial.best
    for a, b in zip(serial.results, parallel.results, strict=True):
        assert a.report.settings == b.report.settings
        assert a.report.per_query == b.report.per_query
        assert a.report.overall == b.report.overall
        assert a.report.embed_calls == b.report.embed_calls
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        evaluate(searcher, queries, max_concurrency=0)


def test_relevant_ids_missing_from_the_index_are_reported_and_logged(searcher, caplog):
    qs = [
        LabelledQuery(id="red", text="red", relevant={pid("red"): 1.0, "ghost-1": 1.0}),
        LabelledQuery(id="blue", text="blue", relevant={pid("blue"): 1.0, "ghost-2": 0.0}),
        LabelledQuery(id="typo", text="green", relevant={"ghost-3": 2.0}),
    ]
    with caplog.at_level("WARNING", logger="crossmodal_search.evaluation"):
        report = evaluate(searcher, qs)
    # graded 0 is "not relevant": its absence does not matter
    assert report.missing_relevant == ["ghost-1", "ghost-3"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "2 relevant product ids" in warning and "ghost-1" in warning
    assert "2 queries" in warning
    assert evaluate(searcher, qs[1:2]).missing_relevant == []
    comparison = compare(searcher, qs, search_modes=["text"], fusions=[], text_weights=[])
    assert comparison.best_report.missing_relevant == ["ghost-1", "ghost-3"]


def test_cli_eval_warns_about_missing_relevant_ids_and_labels_stored(cli_store, tmp_path, capsys):
    qs = [LabelledQuery(id="red", text="red", relevant={pid("red"): 1.0, "ghost": 1.0})]
    path = str(write_queries(qs, tmp_path / "q.jsonl"))
    assert main(["eval", path, *cli_store, "--dimensions", "64"]) == 0
    captured = capsys.readouterr()
    assert "crossmodal: warning: 1 relevant product ids are not in the index" in captured.err
    assert "ghost" in captured.err
    assert "searched" in captured.out
    assert "searched = float32 bytes of the stored vectors the setting searches" in captured.out
    assert main(["eval", path, *cli_store, "--no-compare"]) == 0
    captured = capsys.readouterr()
    assert "stored vectors of the searched type(s)" in captured.out
    assert "not in the index" in captured.err
