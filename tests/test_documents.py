"""Documents: PDF pages rendered to images and embedded as DOCUMENT_IMAGE, queried with
DOCUMENT_RETRIEVAL; plain text over the synchronous limit goes through segmentation.

The PDF is generated here with Pillow (one solid-colour page per section, so the offline
embedder's colour features make page retrieval checkable). Nova requests go through a real
bedrock-runtime client answered by ``FakeBedrock`` at the HTTP boundary.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from PIL import Image, ImageDraw

from crossmodal_search.embeddings import (
    NovaEmbeddings,
    OfflineEmbedder,
    SegmentedEmbeddingJobs,
    embed_text_document,
)
from crossmodal_search.embeddings._segments import (
    SYNC_TEXT_LIMIT_CHARS,
    embed_pdf,
    render_pdf_pages,
)
from crossmodal_search.errors import ConfigurationError, InvalidInputError, UnsupportedMediaError
from crossmodal_search.search import segment_records
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.testing import FakeBedrock, FakeBedrockJobs

DIM = 256
PAGES = ["red", "blue", "green", "yellow"]


def needs_pdfium() -> None:
    pytest.importorskip("pypdfium2", reason="pypdfium2 (the 'pdf' extra) is not installed")


@pytest.fixture
def manual(tmp_path: Path) -> Path:
    pages = []
    for i, colour in enumerate(PAGES):
        page = Image.new("RGB", (300, 420), colour)
        ImageDraw.Draw(page).text((20, 20), f"Kettle manual page {i + 1}", fill="white")
        pages.append(page)
    path = tmp_path / "kettle-manual.pdf"
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return path


def test_pdf_pages_render_to_images(manual: Path) -> None:
    needs_pdfium()
    images = render_pdf_pages(manual, dpi=72)
    assert len(images) == 4
    assert all(img.mode == "RGB" for img in images)
    pixel = images[1].getpixel((150, 300))  # page 2 is blue (JPEG-compressed in the PDF)
    assert isinstance(pixel, tuple)
    assert pixel[0] < 10 and pixel[1] < 10 and pixel[2] > 240
    assert render_pdf_pages(manual.read_bytes(), dpi=144)[0].size == (600, 840)
    assert len(render_pdf_pages(manual, max_pages=2)) == 2


def test_pages_are_embedded_as_document_images_and_queried_with_document_retrieval(
    manual: Path,
) -> None:
    needs_pdfium()
    fake = FakeBedrock(embedder=OfflineEmbedder(dimension=3072))
    nova = NovaEmbeddings(client=fake.client(), dimension=DIM)

    result = embed_pdf(manual, nova, dpi=72)

    assert len(result.segments) == 4 and result.ok
    assert [(s.index, s.start, s.end, s.unit) for s in result.segments] == [
        (i, float(i), float(i + 1), "pages") for i in range(4)
    ]
    assert len(fake.requests) == 4
    for body in fake.requests:
        params = body["singleEmbeddingParams"]
        assert params["embeddingPurpose"] == "GENERIC_INDEX"
        assert params["embeddingDimension"] == DIM
        assert params["image"]["detailLevel"] == "DOCUMENT_IMAGE"
    assert result.source_uri == manual.resolve().as_uri()

    store = LocalVectorStore(dimension=DIM)
    store.put(segment_records("P-KETTLE", result, kind="document"))
    query = nova.embed_text("blue", purpose="DOCUMENT_RETRIEVAL")
    assert fake.requests[-1]["singleEmbeddingParams"]["embeddingPurpose"] == "DOCUMENT_RETRIEVAL"
    hit = store.query(query, top_k=1, filter={"type": "document"})[0]
    assert hit.key == "document-P-KETTLE-1"
    assert hit.metadata["product_id"] == "P-KETTLE"
    assert (hit.metadata["segment_start"], hit.metadata["segment_end"]) == (1.0, 2.0)
    assert hit.metadata["segment_unit"] == "pages"


def test_bad_documents_are_rejected_before_any_call(tmp_path: Path) -> None:
    needs_pdfium()
    fake = FakeBedrock()
    nova = NovaEmbeddings(client=fake.client(), dimension=DIM)
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_bytes(b"this is not a PDF")
    with pytest.raises(UnsupportedMediaError, match="not a readable PDF"):
        embed_pdf(not_pdf, nova)
    with pytest.raises(UnsupportedMediaError, match="not found"):
        embed_pdf(tmp_path / "missing.pdf", nova)
    with pytest.raises(InvalidInputError, match="dpi"):
        embed_pdf(not_pdf, nova, dpi=5)
    with pytest.raises(ConfigurationError, match="embed_document"):
        embed_pdf(not_pdf, object())  # type: ignore[arg-type]  # no embed_document
    assert fake.requests == []


def test_missing_pdf_extra_names_the_install_command(
    manual: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # what an absent package looks like
    with pytest.raises(ConfigurationError, match=r"pip install 'crossmodal-search\[pdf\]'"):
        embed_pdf(manual, OfflineEmbedder(dimension=DIM))


# --- plain-text documents -------------------------------------------------------------------


@pytest.fixture
def s3_jobs(fake_credentials: None) -> Iterator[tuple[SegmentedEmbeddingJobs, FakeBedrockJobs]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="docs")
        fake = FakeBedrockJobs(embedder=OfflineEmbedder(dimension=DIM), s3_client=s3)
        jobs = SegmentedEmbeddingJobs(
            fake.client("bedrock-runtime"),
            s3,
            dimension=DIM,
            poll_interval=1,
            max_poll_interval=2,
            sleep=lambda _: None,
        )
        yield jobs, fake


def test_short_text_document_is_one_synchronous_segment(
    s3_jobs: tuple[SegmentedEmbeddingJobs, FakeBedrockJobs],
) -> None:
    jobs, fake = s3_jobs
    text = "Descale the kettle monthly. " * 20
    result = embed_text_document(
        text,
        embedder=OfflineEmbedder(dimension=DIM),
        jobs=jobs,
        staging_s3_uri="s3://docs/staging/a.txt",
        output_s3_uri="s3://docs/out/",
    )
    (segment,) = result.segments
    assert (segment.start, segment.end, segment.unit) == (0.0, float(len(text)), "chars")
    assert fake.requests == []  # no async job for text that fits one call


def test_long_text_document_goes_through_segmentation(
    s3_jobs: tuple[SegmentedEmbeddingJobs, FakeBedrockJobs],
) -> None:
    jobs, fake = s3_jobs
    text = "Safety instructions for the kettle and its base. " * 400  # ~20,000 chars
    assert len(text) > SYNC_TEXT_LIMIT_CHARS
    with pytest.raises(InvalidInputError, match="synchronous limit"):
        embed_text_document(text, embedder=OfflineEmbedder(dimension=DIM))
    result = embed_text_document(
        text,
        embedder=OfflineEmbedder(dimension=DIM),
        jobs=jobs,
        staging_s3_uri="s3://docs/staging/manual.txt",
        output_s3_uri="s3://docs/out/",
        max_length_chars=4000,
    )
    assert len(result.segments) >= 5
    assert result.segments[-1].end == len(text)
    assert [op for op, _ in fake.requests] == ["StartAsyncInvoke", "GetAsyncInvoke"] + [
        "GetAsyncInvoke"
    ] * (len(fake.requests) - 2)
    records = segment_records("P-KETTLE", result, kind="document")
    assert {r.metadata["segment_unit"] for r in records} == {"chars"}
