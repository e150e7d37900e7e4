"""``crossmodal index`` with products' long media, and ``crossmodal search --mode video|document``.

PDF manuals need no AWS (pages embedded with the chosen embedder, offline here). Videos in S3 go
through Nova async jobs: ``tests/cli_helpers.py`` puts ``FakeBedrockJobs`` and moto behind
boto3's default session, which the CLI uses for ``--media-s3-uri``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from crossmodal_search.cli import main
from crossmodal_search.cli._common import render_results, segment_label
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.search import CrossmodalSearcher, SearchResult
from crossmodal_search.stores import open_store
from crossmodal_search.testing import AsyncJobScript
from tests.cli_helpers import AwsFakes, default_session_fakes

DIM = 256
BUCKET = "catalog-media"
VIDEO = f"s3://{BUCKET}/products/P-KETTLE/demo.mp4"
OUT = f"s3://{BUCKET}/embeddings/"
SCENES = {
    0: "unboxing the stainless steel kettle",
    6: "pouring boiling water into a teapot",
    12: "cleaning limescale with vinegar",
    18: "storing the cord in the base",
}
OFFLINE = ["--embedder", "offline", "--dimension", str(DIM)]


def write_manual(path: Path) -> Path:
    pytest.importorskip("pypdfium2", reason="pypdfium2 (the 'pdf' extra) is not installed")
    pages = []
    for i, colour in enumerate(["red", "blue", "green"]):
        page = Image.new("RGB", (200, 280), colour)
        ImageDraw.Draw(page).text((10, 10), f"page {i + 1}", fill="white")
        pages.append(page)
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return path


def write_products(path: Path, *products: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")
    return path


def test_pdf_manuals_are_indexed_and_found_by_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manual(tmp_path / "kettle-manual.pdf")
    catalog = write_products(
        tmp_path / "products.jsonl",
        {"product_id": "P-KETTLE", "text": "Steel kettle", "document": "kettle-manual.pdf"},
        {"product_id": "P-MUG", "text": "Blue ceramic mug", "video": VIDEO},
    )
    store = f"local:{tmp_path / 'vectors'}"

    assert main(["index", str(catalog), "--store", store, *OFFLINE, "--dry-run"]) == 0
    assert "long media (indexed per segment after the products, not estimated): 1 video, " in (
        capsys.readouterr().out
    )

    assert main(["index", str(catalog), "--store", store, *OFFLINE]) == 0
    out = capsys.readouterr().out
    assert "indexed 2 products, 0 unchanged, 0 failed; 4 vectors written" in out
    assert "long media: 1 sources indexed, 0 unchanged, 0 failures; 3 segment vectors" in out
    # the S3 video needs Nova jobs: left out, and said so
    assert "1 video/audio/document sources in S3 not indexed; pass --media-s3-uri" in out

    search = ["search", "blue", "--store", store, *OFFLINE, "--mode", "document"]
    assert main(search) == 0
    table = capsys.readouterr().out.splitlines()
    row = next(line for line in table if line.lstrip().startswith("1 "))
    assert row.split()[1] == "P-KETTLE" and "document p. 2" in row and "Steel kettle" in row

    assert main([*search, "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert (hit["segment_start"], hit["segment_end"], hit["segment_unit"]) == (1.0, 2.0, "pages")
    assert hit["page"] == 2 and hit["source_uri"].endswith("kettle-manual.pdf")

    assert main(["index", str(catalog), "--store", store, *OFFLINE]) == 0
    assert "long media: 0 sources indexed, 1 unchanged" in capsys.readouterr().out


@pytest.fixture
def aws(fake_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFakes]:
    with default_session_fakes(monkeypatch, dimension=DIM, buckets=(BUCKET,)) as fakes:
        fakes.s3.put_object(Bucket=BUCKET, Key="products/P-KETTLE/demo.mp4", Body=b"\0\0\0\x18ftyp")

        def describe(start: float, end: float) -> str:
            index = int(start // 5)
            return f"{SCENES[max(i for i in SCENES if i <= index)]} step {index}"

        fakes.jobs.add_media(VIDEO, 120, describe)
        yield fakes


def test_videos_in_s3_are_segmented_with_media_s3_uri(
    aws: AwsFakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = write_products(
        tmp_path / "products.jsonl",
        {"product_id": "P-KETTLE", "text": "Steel kettle", "video": VIDEO},
        {"product_id": "P-MUG", "text": "Blue ceramic mug"},
    )
    store = f"local:{tmp_path / 'vectors'}"
    argv = ["index", str(catalog), "--store", store, "--embedder", "nova", "--dimension", str(DIM)]
    aws.jobs.script_async(AsyncJobScript(polls_until_done=2))

    assert main([*argv, "--media-s3-uri", OUT, "--media-poll-interval", "0.001"]) == 0

    out = capsys.readouterr().out
    assert "indexed 2 products" in out
    assert "long media: 1 sources indexed, 0 unchanged, 0 failures; 24 segment vectors" in out
    assert "1 async jobs" in out
    (request,) = [body for op, body in aws.jobs.requests if op == "StartAsyncInvoke"]
    assert request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] == OUT
    video = request["modelInput"]["segmentedEmbeddingParams"]["video"]
    assert video["segmentationConfig"] == {"durationSeconds": 5}

    searcher = CrossmodalSearcher(
        NovaEmbeddings(client=aws.bedrock.client(), dimension=DIM),
        open_store(store, dimension=DIM),
    )
    with searcher:
        hit = searcher.search("pouring boiling water into a teapot", search_mode="video")[0]
    assert hit.product_id == "P-KETTLE" and hit.text == "Steel kettle"
    assert hit.segment_start is not None and 30.0 <= hit.segment_start < 60.0
    assert hit.source_uri == VIDEO

    aws.jobs.script_async(AsyncJobScript(failed_segments={0: "RAI_VIOLATION_INPUT_VIDEO"}))
    argv_10s = [*argv, "--media-s3-uri", OUT, "--media-poll-interval", "0.001"]
    assert main([*argv_10s, "--segment-seconds", "10"]) == 1
    captured = capsys.readouterr()
    # segments 1-11 overwritten; the old 0 (failed now) and 12-23 deleted, not left stale
    assert "11 segment vectors written, 13 stale segments deleted" in captured.out
    assert "failed P-KETTLE (video)" in captured.err and "RAI_VIOLATION_INPUT_VIDEO" in captured.err
    assert "1 media source was not fully indexed" in captured.err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--media-s3-uri", OUT, *OFFLINE], 2, "--media-s3-uri runs Amazon Nova jobs"),
        (["--segment-seconds", "31"], 2, "must be in 1..30"),
        (["--segment-chars", "500"], 2, "must be in 800..50000"),
        (
            ["--media-s3-uri", "catalog-media/embeddings", "--embedder", "nova"],
            1,
            "--media-s3-uri must be an s3://bucket/key URI",
        ),
    ],
)
def test_media_option_errors_before_any_call(
    aws: AwsFakes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    catalog = write_products(
        tmp_path / "products.jsonl", {"product_id": "P-KETTLE", "text": "kettle", "video": VIDEO}
    )
    store = f"local:{tmp_path / 'v'}"
    if code == 2:
        with pytest.raises(SystemExit) as exc:
            main(["index", str(catalog), "--store", store, *argv])
        assert exc.value.code == 2
    else:
        assert main(["index", str(catalog), "--store", store, *argv]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    assert aws.jobs.requests == [] and aws.bedrock.requests == []


@pytest.mark.parametrize(
    ("start", "end", "unit", "label"),
    [
        (65.0, 70.0, "seconds", "1:05-1:10"),
        (3725.5, 3730.0, "seconds", "1:02:05.5-1:02:10"),
        (59.96, 119.95, "seconds", "1:00-2:00"),  # rounded once, not 0:59.0
        (5.04, 9.98, "seconds", "0:05-0:10"),
        (0.26, 3599.94, "seconds", "0:00.3-59:59.9"),
        (0.0, 1000.0, "chars", "chars 0-1000"),
        (2.0, 3.0, "pages", "p. 3"),
        (None, None, None, ""),
    ],
)
def test_segment_labels_in_the_results_table(
    start: float | None, end: float | None, unit: str | None, label: str
) -> None:
    hit = SearchResult(
        product_id="P1",
        text="Kettle",
        image_path=None,
        similarity=0.9,
        distance=0.1,
        matched_type="combined" if unit is None else "video",
        score=0.9,
        key="k",
        metadata={},
        segment_start=start,
        segment_end=end,
        segment_unit=unit,  # type: ignore[arg-type]
    )
    assert segment_label(hit) == label
    row = render_results([hit], width=100).splitlines()[1]
    assert (label in row) if label else ("combined" in row)
