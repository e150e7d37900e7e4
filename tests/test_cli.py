"""The ``crossmodal`` command through its real entry point (and once as a console script)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossmodal_search.cli import main
from crossmodal_search.cli._common import ProgressBar
from crossmodal_search.datasets import (
    SAMPLE_QUERIES,
    write_sample_catalog,
)
from crossmodal_search.errors import UnsupportedMediaError

OFFLINE = ["--embedder", "offline", "--dimension", "384"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def indexed(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    store = f"local:{tmp_path_factory.mktemp('store') / 'vectors'}"
    assert main(["index", str(catalog), "--store", store, *OFFLINE]) == 0
    return store


def test_index_reports_what_ran_and_is_resumable(
    catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"local:{tmp_path / 'v'}"
    assert main(["index", str(catalog), "--store", store, *OFFLINE, "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "embedder: offline embedder (requested)" in out
    assert "10 products from ABO directory" in out
    assert "indexed 10 products, 0 unchanged, 0 failed; 30 vectors written" in out
    assert main(["index", str(catalog), "--store", store, *OFFLINE]) == 0
    out = capsys.readouterr().out
    assert "indexed 28 products, 10 unchanged, 0 failed" in out
    assert "68 embedding calls" in out  # 28 texts, 28 main photos, the bags' 12 extra ones


def test_dry_run_changes_nothing(
    catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"local:{tmp_path / 'v'}"
    assert main(["index", str(catalog), "--store", store, *OFFLINE, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"store: {store} does not exist yet" in out
    assert "embedding calls: 88 (38 text, 50 image)" in out  # the bags' extra photos too
    assert "vectors to write: 126 in 1 write requests" in out
    assert not (tmp_path / "v").exists()  # a dry run creates nothing

    assert main(["index", str(catalog), "--store", store, *OFFLINE, "--limit", "30"]) == 0
    capsys.readouterr()
    assert main(["index", str(catalog), "--store", store, *OFFLINE, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 8 products to embed, 30 unchanged" in out
    assert "embedding calls: 28 (8 text, 20 image)" in out  # the last 8 include the 6 bags


def test_search_table_and_json(
    indexed: str, catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "red summer dress", "--store", indexed, *OFFLINE, "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("embedder: offline embedder")
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#"))
    rows = lines[header + 1 :]
    assert len(rows) == 3 and rows[0].split()[:2] == ["1", SAMPLE_QUERIES[0].expected]

    photo = catalog / "queries" / "photo-blue-sneakers.jpg"
    args = ["search", "--image", str(photo), "--mode", "image", "--store", indexed, *OFFLINE]
    assert main([*args, "--json", "--filter", '{"product_type": "SHOES"}', "--top-k", "4"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["embedder"].startswith("offline embedder")
    assert payload["query"]["filter"] == {"product_type": "SHOES"}
    results = payload["results"]
    assert len(results) == 4
    assert results[0]["product_id"] == SAMPLE_QUERIES[1].expected
    assert {r["metadata"]["product_type"] for r in results} == {"SHOES"}
    assert set(results[0]) >= {"product_id", "title", "similarity", "distance", "matched_type"}

    both = ["search", "in green", "--image", str(photo), "--fusion", "rrf", "--text-weight", "0.6"]
    assert main([*both, "--store", indexed, *OFFLINE, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 5


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "x", "--top-k", "0"],
        ["search", "x", "--top-k", "101"],
        ["search", "x", "--top-k", "many"],
        ["search", "x", "--filter", "{not json"],
        ["search", "x", "--filter", "[1, 2]"],
        ["search", "x", "--mode", "movie"],
        ["search", "x", "--fusion", "max"],
        ["search", "x", "--text-weight", "1.5"],
        ["search", "x", "--dimension", "512"],
        ["search", "x", "--embedder", "titan"],
        ["search"],
        ["index"],
        ["index", "x", "--limit", "-3"],
        ["nonsense"],
        [],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_bad_filter_json_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "x", "--filter", '{"color": red}'])
    err = capsys.readouterr().err
    assert "argument --filter: not valid JSON (Expecting value at column 11)" in err


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("crossmodal: error: ")
    return err[0]


def test_missing_image_is_one_line_exit_1(
    indexed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jpg"
    code = main(["search", "--image", str(missing), "--store", indexed, *OFFLINE])
    assert code == 1
    assert _one_error_line(capsys) == f"crossmodal: error: image file not found: {missing}"
    with pytest.raises(UnsupportedMediaError):
        main(["--debug", "search", "--image", str(missing), "--store", indexed, *OFFLINE])


def test_runtime_errors_are_one_line_exit_1(
    indexed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "x", "--store", f"local:{tmp_path / 'none'}", *OFFLINE]) == 1
    assert "no index at" in _one_error_line(capsys)
    assert not (tmp_path / "none").exists()

    assert main(["search", "x", "--store", indexed, *OFFLINE, "--filter", '{"$bad": 1}']) == 1
    assert "$bad" in _one_error_line(capsys)

    assert main(["search", "x", "--store", indexed, "--embedder", "nova"]) == 1
    assert "credentials" in _one_error_line(capsys)

    assert main(["search", "x", "--store", "ftp://nowhere", *OFFLINE]) == 1
    assert "store spec" in _one_error_line(capsys)

    assert main(["index", str(tmp_path / "nothing.jsonl"), "--store", indexed, *OFFLINE]) == 1
    assert "catalog not found" in _one_error_line(capsys)


def test_index_jsonl_reports_failed_products(
    tmp_path: Path, catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    good = next((catalog / "images" / "small").rglob("*.jpg"))
    lines = [
        {"product_id": "ok", "text": "Blue mug", "image": str(good), "metadata": {"color": "blue"}},
        {"product_id": "bad", "text": "Broken photo", "image": "broken.jpg"},
    ]
    path = tmp_path / "products.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code = main(["index", str(path), "--store", f"local:{tmp_path / 'v'}", *OFFLINE])
    captured = capsys.readouterr()
    assert code == 1
    assert "indexed 1 products, 0 unchanged, 1 failed" in captured.out
    assert "failed bad (image)" in captured.err
    assert "1 product must be fixed" in captured.err


@pytest.mark.usefixtures("fake_credentials")
def test_index_report_names_products_to_retry_with_code_and_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from crossmodal_search.testing import FakeBedrock

    fake = FakeBedrock()
    fake.fail_matching("ModelErrorException", contains="Cursed lamp", message="model crashed")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", fake.session())
    lines = [
        {"product_id": "lamp", "text": "Cursed lamp"},
        *({"product_id": f"mug-{i}", "text": f"Blue mug number {i}"} for i in range(3)),
    ]
    path = tmp_path / "products.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "report.json"
    argv = ["index", str(path), "--store", f"local:{tmp_path / 'v'}", "--embedder", "nova"]
    code = main([*argv, "--dimension", "256", "--report", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "indexed 3 products, 0 unchanged, 1 failed" in captured.out
    assert "failed lamp (text): ServiceError:" in captured.err
    assert "ModelErrorException" in captured.err and "[request id " in captured.err
    assert "1 product met service errors a rerun may get past" in captured.err
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["retry_ids"] == ["lamp"]
    assert report["failed"][0]["code"] == "ModelErrorException"
    assert report["failed"][0]["request_id"]


def test_demo_prints_three_result_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    assert main(["demo", "--embedder", "offline", "--dir", str(tmp_path / "demo")]) == 0
    assert time.perf_counter() - started < 60
    out = capsys.readouterr().out
    assert "embedder: offline embedder (requested)" in out
    assert "sample catalog: 38 products" in out
    for number, query in enumerate(SAMPLE_QUERIES, 1):
        assert f"{number}. {query.name} query:" in out
        assert f"expected {query.expected}: rank 1" in out
    assert "crossmodal search --store" in out
    assert (tmp_path / "demo" / "store").is_dir()


def test_progress_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = io.StringIO()
    bar = ProgressBar("indexing", plain)
    bar(1, 2)
    bar.close()
    assert plain.getvalue() == ""
    tty = Tty()
    bar = ProgressBar("indexing", tty)
    bar(1, 2)
    bar(2, 2)
    bar.close()
    assert tty.getvalue().startswith("\rindexing [")
    assert tty.getvalue().endswith("2/2\n")


def test_progress_bar_shows_rate_and_time_left() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [100.0]
    tty = Tty()
    bar = ProgressBar("indexing", tty, clock=lambda: now[0])
    bar(0, 100)
    now[0] += 10.0
    bar(25, 100)  # 2.5 products/s, 75 left: 30 s
    assert "25/100 2.5/s ETA 0:30" in tty.getvalue()
    assert (bar.done, bar.total) == (25, 100)


def test_console_script_runs_the_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("crossmodal")
    assert script.is_file(), "the package's console script is installed next to python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS")}
    started = time.perf_counter()
    proc = subprocess.run(
        [str(script), "demo", "--dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - started < 60
    assert "offline embedder (auto: no AWS credentials found)" in proc.stdout
    assert proc.stdout.count(": rank 1") == len(SAMPLE_QUERIES)
    assert proc.stderr == ""  # no progress bar: stderr is not a terminal


def test_make_searcher_on_s3_vectors_never_creates_when_reading(tmp_path: Path) -> None:
    from crossmodal_search.cli._common import make_searcher
    from crossmodal_search.errors import ResourceNotFoundError
    from crossmodal_search.search import Product
    from crossmodal_search.testing import FakeS3Vectors

    fake = FakeS3Vectors()
    spec = "s3vectors://shop-vectors/products"
    with pytest.raises(ResourceNotFoundError):
        make_searcher(
            store=spec, embedder="offline", dimension=384, session=fake.session(), read_only=True
        )
    assert fake.calls["create_vector_bucket"] == fake.calls["create_index"] == 0

    searcher, description = make_searcher(
        store=spec, embedder="offline", dimension=384, session=fake.session()
    )
    assert description.splitlines()[1] == f"store: {spec} (384 dimensions)"
    with searcher:
        searcher.index([Product(product_id="p1", text="Red summer dress")])
    assert fake.vector_count("shop-vectors", "products") == 2

    reader, _ = make_searcher(
        store=spec, embedder="offline", dimension=384, session=fake.session(), read_only=True
    )
    with reader:
        assert reader.search("red dress")[0].product_id == "p1"


def test_index_prune_removes_products_no_longer_in_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(ids: list[str]) -> Path:
        path = tmp_path / "products.jsonl"
        lines = [{"product_id": i, "text": f"{i} in blue"} for i in ids]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        return path

    store = f"local:{tmp_path / 'v'}"
    assert main(["index", str(write(["mug", "lamp", "kettle"])), "--store", store, *OFFLINE]) == 0
    path = write(["mug", "kettle"])
    assert main(["index", str(path), "--store", store, *OFFLINE, "--prune", "--dry-run"]) == 0
    assert "would prune 1 products no longer in the catalog" in capsys.readouterr().out
    assert main(["index", str(path), "--store", store, *OFFLINE, "--prune"]) == 0
    assert "pruned 1 products no longer in the catalog" in capsys.readouterr().out
    assert main(["search", "lamp", "--store", store, *OFFLINE, "--json", "--top-k", "5"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert {h["product_id"] for h in hits} == {"mug", "kettle"}
    # --limit makes the catalog partial: pruning would delete the rest of the catalog
    with pytest.raises(SystemExit) as exc:
        main(["index", str(path), "--store", store, *OFFLINE, "--prune", "--limit", "1"])
    assert exc.value.code == 2
    assert "--prune" in capsys.readouterr().err


def test_index_with_a_missing_image_root_fails_and_an_empty_one_warns(
    catalog: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = f"local:{tmp_path / 'v'}"
    argv = ["index", str(catalog), "--store", store, *OFFLINE, "--image-root"]
    assert main([*argv, str(tmp_path / "nonexistent")]) == 1
    err = capsys.readouterr().err
    assert "image root not found" in err and err.count("\n") == 1
    assert not (tmp_path / "v").exists()

    (tmp_path / "empty").mkdir()
    # the CLI logs warnings to stderr (pytest's log capture stands in for the handler here)
    with caplog.at_level("WARNING"):
        assert main([*argv, str(tmp_path / "empty"), "--dry-run"]) == 0
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    message = warning.getMessage()
    assert "none of the 38 images were found" in message
    assert "indexed text-only" in message and "--image-root" in message


def test_store_info_and_upgrade_describe_and_add_full_text_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "products.jsonl"
    path.write_text(
        json.dumps({"product_id": "mug", "text": "Blue mug", "metadata": {"sku": "MG-12"}}) + "\n",
        encoding="utf-8",
    )
    store = f"local:{tmp_path / 'v'}"
    assert main(["index", str(path), "--store", store, "--no-text-fields", *OFFLINE]) == 0
    capsys.readouterr()
    assert main(["store", "info", store]) == 0
    out = capsys.readouterr().out
    assert "index mode: ENHANCED" in out and "full-text fields: none" in out
    assert main(["store", "upgrade", store, "--text-field", "sku", "--text-field", "title"]) == 0
    out = capsys.readouterr().out
    assert "already ENHANCED" in out and "full-text fields added: sku, title" in out
    assert main(["search", "MG-12", "--store", store, "--hybrid", "--json", *OFFLINE]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert hit["product_id"] == "mug" and hit["matched_words"] == ["MG", "12"]
    assert main(["store", "info", "memory:"]) == 1
    assert "memory: store holds nothing" in capsys.readouterr().err
