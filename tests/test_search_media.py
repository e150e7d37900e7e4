"""Long media through the searcher: products' videos, audio and manuals become segment vectors,
and ``search(search_mode="video" | "audio" | "document" | "all")`` names the product and where.

moto answers S3; ``FakeBedrockJobs`` answers the async-invoke calls and ``FakeBedrock`` the
synchronous queries, both at botocore's before-send boundary and both embedding with the same
offline embedder, so a query about a scene finds the segment that shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image, ImageDraw
from pydantic import ValidationError

from crossmodal_search._types import MetadataValue
from crossmodal_search.embeddings import NovaEmbeddings, OfflineEmbedder, SegmentedEmbeddingJobs
from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.search import CrossmodalSearcher, Product, SearchResult
from crossmodal_search.stores._local import LocalVectorStore
from crossmodal_search.testing import AsyncJobScript, FakeBedrock, FakeBedrockJobs
from tests.media_helpers import BLENDER_SCENES, KETTLE_SCENES, scenes

DIM = 256
BUCKET = "catalog-media"
OUT = f"s3://{BUCKET}/embeddings/"
KETTLE_VIDEO = f"s3://{BUCKET}/products/P-KETTLE/demo.mp4"
BLENDER_VIDEO = f"s3://{BUCKET}/products/P-BLEND/demo.mov"
KETTLE_AUDIO = f"s3://{BUCKET}/products/P-KETTLE/jingle.mp3"


@dataclass
class Env:
    s3: Any
    jobs_fake: FakeBedrockJobs
    bedrock: FakeBedrock
    jobs: SegmentedEmbeddingJobs
    searcher: CrossmodalSearcher
    store: LocalVectorStore

    def purposes(self) -> list[str]:
        return [r["singleEmbeddingParams"]["embeddingPurpose"] for r in self.bedrock.requests]


@pytest.fixture
def env(fake_credentials: None) -> Iterator[Env]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for uri, body in (
            (KETTLE_VIDEO, b"\0\0\0\x18ftypmp42"),
            (BLENDER_VIDEO, b"\0\0\0\x14ftypqt  "),
            (KETTLE_AUDIO, b"ID3\x03"),
        ):
            s3.put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=body)
        jobs_fake = FakeBedrockJobs(embedder=OfflineEmbedder(dimension=DIM), s3_client=s3)
        jobs_fake.add_media(KETTLE_VIDEO, 120, scenes(KETTLE_SCENES))
        jobs_fake.add_media(BLENDER_VIDEO, 95, scenes(BLENDER_SCENES))
        jobs_fake.add_media(KETTLE_AUDIO, 15, ["cheerful whistle", "kettle click", "steam hiss"])
        jobs = SegmentedEmbeddingJobs(
            jobs_fake.client("bedrock-runtime"),
            s3,
            dimension=DIM,
            poll_interval=1,
            max_poll_interval=2,
            timeout=60,
            sleep=lambda _: None,
        )
        bedrock = FakeBedrock(embedder=OfflineEmbedder(dimension=DIM))
        store = LocalVectorStore(dimension=DIM)
        searcher = CrossmodalSearcher(NovaEmbeddings(client=bedrock.client(), dimension=DIM), store)
        yield Env(s3, jobs_fake, bedrock, jobs, searcher, store)


def catalog() -> list[Product]:
    return [
        Product(
            product_id="P-KETTLE",
            text="Stainless steel electric kettle 1.7 l",
            video=KETTLE_VIDEO,
            audio=KETTLE_AUDIO,
            metadata={"brand": "Brewmaster", "product_type": "KETTLE"},
        ),
        Product(
            product_id="P-BLEND",
            text="Glass jar blender 1200 W",
            image="s3://catalog-media/products/P-BLEND/main.jpg",
            video=BLENDER_VIDEO,
            metadata={"brand": "Whirl", "product_type": "BLENDER"},
        ),
        Product(product_id="P-MUG", text="Blue ceramic mug", metadata={"brand": "Brewmaster"}),
    ]


def test_two_minute_video_in_s3_becomes_segments_whose_hits_name_product_and_time_range(
    env: Env,
) -> None:
    products = catalog()
    assert env.searcher.index(products).indexed == 3
    text_calls = len(env.bedrock.requests)

    report = env.searcher.index_media(products, jobs=env.jobs, output_s3_uri=OUT)

    assert report.failed == []
    assert (report.indexed, report.vectors_written) == (3, 24 + 3 + 19)
    assert len(report.jobs) == 3 and report.embed_calls == 3
    assert len(env.bedrock.requests) == text_calls  # segments come from the async jobs only

    hits = env.searcher.search("pouring boiling water into a teapot", search_mode="video", top_k=2)
    assert env.purposes()[-1] == "VIDEO_RETRIEVAL"
    best = hits[0]
    assert isinstance(best, SearchResult)
    assert best.product_id == "P-KETTLE" and best.matched_type == "video"
    assert best.segment_unit == "seconds" and best.source_uri == KETTLE_VIDEO
    assert best.segment_start is not None and best.segment_end is not None
    assert 60.0 <= best.segment_start < 80.0  # the teapot scene: segments 12-15
    assert best.segment_end - best.segment_start == 5.0
    assert best.key == f"video-P-KETTLE-{int(best.segment_start // 5)}"
    assert best.page is None
    # displayable and filterable like the product itself
    assert best.text == "Stainless steel electric kettle 1.7 l" and best.title.startswith("Stain")
    assert best.metadata == {"brand": "Brewmaster", "product_type": "KETTLE"}
    assert [h.product_id for h in hits] == ["P-KETTLE", "P-BLEND"]  # one hit per product

    ice = env.searcher.search("crushing ice cubes for a smoothie", search_mode="video")[0]
    assert (
        ice.product_id == "P-BLEND"
        and ice.image_path == "s3://catalog-media/products/P-BLEND/main.jpg"
    )
    assert ice.segment_start is not None and 30.0 <= ice.segment_start < 60.0
    only_kettle = env.searcher.search(
        "crushing ice cubes for a smoothie", search_mode="video", filter={"brand": "Brewmaster"}
    )
    assert {h.product_id for h in only_kettle} == {"P-KETTLE"}

    sound = env.searcher.search("steam hiss", search_mode="audio", top_k=1)[0]
    assert env.purposes()[-1] == "AUDIO_RETRIEVAL"
    assert (sound.product_id, sound.matched_type, sound.key) == (
        "P-KETTLE",
        "audio",
        "audio-P-KETTLE-2",
    )
    assert (sound.segment_start, sound.segment_end) == (10.0, 15.0)

    # "all" ranks segments with text/image/combined vectors, each product once.
    everything = env.searcher.search("cleaning limescale with vinegar", search_mode="all", top_k=3)
    assert env.purposes()[-1] == "GENERIC_RETRIEVAL"
    assert everything[0].product_id == "P-KETTLE" and everything[0].matched_type == "video"
    assert len({h.product_id for h in everything}) == len(everything) == 3
    mug = next(h for h in everything if h.product_id == "P-MUG")
    assert mug.segment_start is None and mug.segment_unit is None and mug.source_uri is None

    # the text modes never see segments
    combined = env.searcher.search("pouring boiling water into a teapot", top_k=3)
    assert {h.matched_type for h in combined} == {"combined"}

    view = env.searcher.get_product("P-KETTLE")
    assert view is not None and view.vector_types == ["text", "combined", "video", "audio"]


def test_rerun_skips_unchanged_media_and_reindexes_changed_products(env: Env) -> None:
    products = catalog()
    first = env.searcher.index_media(products, jobs=env.jobs, output_s3_uri=OUT)
    assert first.indexed == 3 and len(env.jobs_fake.async_jobs) == 3

    seen: list[tuple[int, int]] = []
    again = env.searcher.index_media(
        products, jobs=env.jobs, output_s3_uri=OUT, progress=lambda d, t: seen.append((d, t))
    )
    assert (again.indexed, again.skipped_unchanged, again.jobs) == (0, 3, [])
    assert seen == [(1, 3), (2, 3), (3, 3)]  # skipped sources count as done
    assert len(env.jobs_fake.async_jobs) == 3  # nothing paid twice

    renamed = [
        p.model_copy(update={"text": "Kettle, renamed"}) if p.product_id == "P-KETTLE" else p
        for p in products
    ]
    changed = env.searcher.index_media(renamed, jobs=env.jobs, output_s3_uri=OUT)
    assert (changed.indexed, changed.skipped_unchanged) == (2, 1)  # the kettle's video and audio
    hit = env.searcher.search("storing the cord in the base", search_mode="video", top_k=1)[0]
    assert hit.product_id == "P-KETTLE" and hit.text == "Kettle, renamed"

    coarser = env.searcher.index_media(
        products[1:2], jobs=env.jobs, output_s3_uri=OUT, segment_seconds=10
    )
    assert coarser.vectors_written == 10 and coarser.vectors_deleted == 9  # 19 five-second ones
    stored = list(env.store.keys())
    blender = sorted(k for k in stored if k.startswith("video-P-BLEND-"))
    assert blender == sorted(f"video-P-BLEND-{i}" for i in range(10))


def test_delete_removes_a_products_segments_too(env: Env) -> None:
    products = catalog()
    env.searcher.index(products)
    env.searcher.index_media(products, jobs=env.jobs, output_s3_uri=OUT)
    assert len(env.store) == 2 + 3 + 2 + 24 + 3 + 19  # text+combined, blender 3, mug 2

    env.searcher.delete(["P-KETTLE"])

    assert env.searcher.get_product("P-KETTLE") is None
    stored = list(env.store.keys())
    assert not [k for k in stored if "P-KETTLE" in k]
    assert len(env.store) == 3 + 2 + 19
    hits = env.searcher.search("pouring boiling water into a teapot", search_mode="video")
    assert {h.product_id for h in hits} == {"P-BLEND"}


def test_failed_segments_and_jobs_are_reported_per_product(env: Env) -> None:
    env.s3.put_object(Bucket=BUCKET, Key="products/P-X/broken.mp4", Body=b"not a video")
    env.jobs_fake.script_async(
        AsyncJobScript(failed_segments={3: "RAI_VIOLATION_INPUT_IMAGE_DEFLECTION"})
    )
    products = [
        Product(product_id="P-KETTLE", text="Kettle", video=KETTLE_VIDEO),
        Product(product_id="P-X", text="Broken", video=f"s3://{BUCKET}/products/P-X/broken.mp4"),
        Product(
            product_id="P-BIG",
            text="Blender",
            video=BLENDER_VIDEO,
            metadata={"notes": "x" * 2100},  # over S3 Vectors' 2 KB of filterable metadata
        ),
    ]
    seen: list[tuple[int, int]] = []
    report = env.searcher.index_media(
        products, jobs=env.jobs, output_s3_uri=OUT, progress=lambda d, t: seen.append((d, t))
    )
    # Two sources reach the jobs (the over-limit product is refused before); both finish,
    # the failed one too.
    assert seen == [(1, 2), (2, 2)]

    failures = {(f.product_id, f.kind): f.reason for f in report.failed}
    assert set(failures) == {("P-KETTLE", "video"), ("P-X", "video"), ("P-BIG", "metadata")}
    assert "segment 3" in failures[("P-KETTLE", "video")]
    assert "RAI_VIOLATION" in failures[("P-KETTLE", "video")]
    assert KETTLE_VIDEO in failures[("P-KETTLE", "video")]
    assert "INVALID_CONTENT" in failures[("P-X", "video")]
    assert len(report.jobs) == 2  # the over-limit product never started a job
    assert report.indexed == 1 and report.vectors_written == 23
    assert "video-P-KETTLE-3" not in set(env.store.keys())


def test_media_settings_and_sources_are_checked_before_any_call(env: Env) -> None:
    products = catalog()
    with pytest.raises(InvalidInputError, match="output_s3_uri"):
        env.searcher.index_media(products, jobs=env.jobs)
    with pytest.raises(InvalidInputError, match="jobs="):
        env.searcher.index_media(products, output_s3_uri=OUT)
    with pytest.raises(InvalidInputError, match="segment_seconds"):
        env.searcher.index_media(products, jobs=env.jobs, output_s3_uri=OUT, segment_seconds=31)
    with pytest.raises(InvalidInputError, match="appears twice"):
        env.searcher.index_media(products + products[:1], jobs=env.jobs, output_s3_uri=OUT)
    other_dim = SegmentedEmbeddingJobs(
        env.jobs_fake.client("bedrock-runtime"), env.s3, dimension=384
    )
    with pytest.raises(ConfigurationError, match="384-dimensional"):
        env.searcher.index_media(products, jobs=other_dim, output_s3_uri=OUT)
    other_model = SegmentedEmbeddingJobs(
        env.jobs_fake.client("bedrock-runtime"), env.s3, dimension=DIM, model_id="other-model"
    )
    with pytest.raises(ConfigurationError, match="share one model"):
        env.searcher.index_media(products, jobs=other_model, output_s3_uri=OUT)
    assert env.jobs_fake.requests == [] and len(env.store) == 0
    with pytest.raises(InvalidInputError, match=r"search_mode must be one of .*video"):
        env.searcher.search("kettle", search_mode="movie")  # type: ignore[arg-type]

    with pytest.raises(ValidationError, match="s3:// URI"):
        Product(product_id="p", text="t", video="demo.mp4")
    with pytest.raises(ValidationError, match="reserved"):
        Product(product_id="p", text="t", metadata={"segment_start": 1})
    assert Product(product_id="p", text="t", audio="  ").audio is None


# --- documents --------------------------------------------------------------------------------

PAGES = ["red", "blue", "green", "yellow"]


@pytest.fixture
def manual(tmp_path: Path) -> Path:
    pytest.importorskip("pypdfium2", reason="pypdfium2 (the 'pdf' extra) is not installed")
    pages = []
    for i, colour in enumerate(PAGES):
        page = Image.new("RGB", (200, 280), colour)
        ImageDraw.Draw(page).text((10, 10), f"Kettle manual page {i + 1}", fill="white")
        pages.append(page)
    path = tmp_path / "kettle-manual.pdf"
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return path


def test_pdf_manual_pages_are_searchable_in_document_mode(manual: Path, env: Env) -> None:
    products = [
        Product(product_id="P-KETTLE", text="Stainless steel kettle", document=str(manual)),
        Product(product_id="P-MUG", text="Blue ceramic mug"),
    ]
    env.searcher.index(products)
    before = len(env.bedrock.requests)

    seen: list[tuple[int, int]] = []
    report = env.searcher.index_media(  # PDFs alone need no async jobs
        products, dpi=72, progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, 1)]  # one PDF source (the mug has no media)

    assert report.failed == [] and report.indexed == 1
    assert report.vectors_written == 4 and report.embed_calls == 4 and report.jobs == []
    page_requests = [r["singleEmbeddingParams"] for r in env.bedrock.requests[before:]]
    assert [r["image"]["detailLevel"] for r in page_requests] == ["DOCUMENT_IMAGE"] * 4
    assert {r["embeddingPurpose"] for r in page_requests} == {"GENERIC_INDEX"}

    hit = env.searcher.search("blue", search_mode="document", top_k=1)[0]
    assert env.purposes()[-1] == "DOCUMENT_RETRIEVAL"
    assert (hit.product_id, hit.matched_type, hit.key) == (
        "P-KETTLE",
        "document",
        "document-P-KETTLE-1",
    )
    assert (hit.segment_start, hit.segment_end, hit.segment_unit) == (1.0, 2.0, "pages")
    assert hit.page == 2
    assert hit.source_uri == manual.resolve().as_uri()
    assert hit.text == "Stainless steel kettle"
    assert hit.model_dump(mode="json")["page"] == 2

    assert env.searcher.index_media(products, dpi=72).skipped_unchanged == 1
    missing = Product(product_id="P-GONE", text="x", document=str(manual.parent / "nope.pdf"))
    gone = env.searcher.index_media([missing])
    assert [(f.product_id, f.kind) for f in gone.failed] == [("P-GONE", "document")]
    assert "not found" in gone.failed[0].reason


def test_long_text_document_in_s3_is_segmented_with_character_ranges(env: Env) -> None:
    chapters = [
        "Safety: never immerse the kettle base in water. " * 30,
        "Descaling: fill with equal parts vinegar and water, boil, rinse twice. " * 30,
    ]
    env.s3.put_object(Bucket=BUCKET, Key="manuals/kettle.txt", Body="\n".join(chapters).encode())
    product = Product(
        product_id="P-KETTLE", text="Kettle", document=f"s3://{BUCKET}/manuals/kettle.txt"
    )
    report = env.searcher.index_media(
        [product], jobs=env.jobs, output_s3_uri=OUT, max_length_chars=1000
    )
    assert report.failed == [] and report.vectors_written >= 3
    hit = env.searcher.search(
        "descaling with vinegar and water, boil, rinse", search_mode="document", top_k=1
    )[0]
    assert hit.product_id == "P-KETTLE" and hit.segment_unit == "chars"
    assert hit.segment_start is not None and hit.segment_start >= len(chapters[0]) - 1000
    assert hit.page is None


def test_a_source_whose_first_segments_failed_is_retried_and_fully_deletable(env: Env) -> None:
    env.jobs_fake.script_async(
        AsyncJobScript(failed_segments={0: "RAI_VIOLATION_INPUT_VIDEO", 1: "INTERNAL"})
    )
    kettle = Product(product_id="P-KETTLE", text="Kettle", video=KETTLE_VIDEO)
    first = env.searcher.index_media([kettle], jobs=env.jobs, output_s3_uri=OUT)
    assert first.vectors_written == 22 and len(first.failed) == 2  # one line per segment

    retry = env.searcher.index_media([kettle], jobs=env.jobs, output_s3_uri=OUT)
    assert retry.skipped_unchanged == 0 and retry.failed == []  # embedded again, now whole
    assert retry.vectors_written == 24

    env.jobs_fake.script_async(AsyncJobScript(failed_segments={0: "RAI_VIOLATION_INPUT_VIDEO"}))
    coarser = env.searcher.index_media(
        [kettle], jobs=env.jobs, output_s3_uri=OUT, segment_seconds=30
    )
    assert coarser.vectors_written == 3 and coarser.vectors_deleted == 24 - 3
    env.searcher.delete(["P-KETTLE"])
    assert len(env.store) == 0


def test_a_timed_out_job_is_resumed_by_the_rerun_not_paid_twice(env: Env) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    jobs = SegmentedEmbeddingJobs(
        env.jobs_fake.client("bedrock-runtime"),
        env.s3,
        dimension=DIM,
        poll_interval=5,
        max_poll_interval=60,
        sleep=sleep,
        clock=lambda: now[0],
    )
    env.jobs_fake.script_async(AsyncJobScript(polls_until_done=30))  # ~25 min of polling
    kettle = Product(product_id="P-KETTLE", text="Kettle", video=KETTLE_VIDEO)

    first = env.searcher.index_media([kettle], jobs=jobs, output_s3_uri=OUT, timeout=600)

    assert [f.kind for f in first.failed] == ["video"]
    assert "JobTimeoutError" in first.failed[0].reason and "keeps running" in first.failed[0].reason
    assert first.vectors_written == 0 and len(env.store) == 0
    records = list(env.s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert any(o["Key"].startswith("embeddings/crossmodal-jobs/") for o in records)

    second = env.searcher.index_media([kettle], jobs=jobs, output_s3_uri=OUT, timeout=3600)

    assert second.failed == [] and second.vectors_written == 24
    assert second.jobs == first.jobs  # the same invocation, waited for again
    assert env.jobs_fake.calls["StartAsyncInvoke"] == 1
    assert second.embed_calls == 0  # nothing new paid for

    # only the product's text changed: the completed job's results are read again
    renamed = kettle.model_copy(update={"text": "Kettle, 1.7 l"})
    third = env.searcher.index_media([renamed], jobs=jobs, output_s3_uri=OUT)
    assert third.indexed == 1 and env.jobs_fake.calls["StartAsyncInvoke"] == 1
    hit = env.searcher.search("storing the cord in the base", search_mode="video", top_k=1)[0]
    assert hit.text == "Kettle, 1.7 l"

    # a job that failed is started again
    env.jobs_fake.script_async(AsyncJobScript(fail_job="ServiceUnavailable"))
    blender = Product(product_id="P-BLEND", text="Blender", video=BLENDER_VIDEO)
    failed = env.searcher.index_media([blender], jobs=jobs, output_s3_uri=OUT)
    assert [f.kind for f in failed.failed] == ["video"] and "ServiceUnavailable" in failed.failed[
        0
    ].reason
    retried = env.searcher.index_media([blender], jobs=jobs, output_s3_uri=OUT)
    assert retried.failed == [] and retried.vectors_written == 19
    assert env.jobs_fake.calls["StartAsyncInvoke"] == 3


def test_local_text_documents_short_in_one_call_long_through_segmentation(
    env: Env, tmp_path: Path
) -> None:
    care = tmp_path / "care.txt"
    care.write_text("Wipe the steel body with a soft damp cloth.", encoding="utf-8")
    long_manual = tmp_path / "manual.md"
    chapters = [
        "Safety: never immerse the kettle base in water. " * 100,
        "Descaling: fill with equal parts vinegar and water, boil, rinse twice. " * 100,
    ]
    long_manual.write_text("\n".join(chapters), encoding="utf-8")
    binary = tmp_path / "scan.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    products = [
        Product(product_id="P-CARE", text="Kettle", document=str(care)),
        Product(product_id="P-MANUAL", text="Kettle", document=str(long_manual)),
        Product(product_id="P-BIN", text="Scanner", document=str(binary)),
    ]
    assert len(long_manual.read_text()) > 8192

    chars = 2000
    report = env.searcher.index_media(
        products, jobs=env.jobs, output_s3_uri=OUT, max_length_chars=chars
    )

    assert [(f.product_id, f.kind) for f in report.failed] == [("P-BIN", "document")]
    assert "neither a PDF nor UTF-8 text" in report.failed[0].reason
    assert report.indexed == 2 and len(report.jobs) == 1
    staged = [
        o["Key"]
        for o in env.s3.list_objects_v2(Bucket=BUCKET, Prefix="embeddings/crossmodal-staging/")[
            "Contents"
        ]
    ]
    assert len(staged) == 1 and staged[0].endswith(".txt")

    short = env.searcher.search("soft damp cloth", search_mode="document", top_k=1)[0]
    assert (short.product_id, short.segment_unit, short.segment_start) == ("P-CARE", "chars", 0.0)
    assert short.source_uri == care.resolve().as_uri()
    long = env.searcher.search(
        "descaling with vinegar and water, boil, rinse", search_mode="document", top_k=1
    )[0]
    assert long.product_id == "P-MANUAL" and long.segment_unit == "chars"
    assert long.segment_start is not None and long.segment_start >= len(chapters[0]) - 2000
    assert long.source_uri == long_manual.resolve().as_uri()  # the local file, not the staging copy

    again = env.searcher.index_media(
        products[:2], jobs=env.jobs, output_s3_uri=OUT, max_length_chars=chars
    )
    assert again.skipped_unchanged == 2 and env.jobs_fake.calls["StartAsyncInvoke"] == 1
    no_jobs = env.searcher.index_media([products[1]], max_length_chars=1000)
    assert [f.kind for f in no_jobs.failed] == ["document"]
    assert "over the synchronous limit" in no_jobs.failed[0].reason


def test_media_metadata_key_limit_counts_the_keys_the_searcher_adds(env: Env) -> None:
    many: dict[str, MetadataValue] = {f"k{i}": i for i in range(40)}
    product = Product("P-MANY", "Kettle", video=KETTLE_VIDEO, metadata=many)
    report = env.searcher.index_media([product], jobs=env.jobs, output_s3_uri=OUT)
    (failure,) = report.failed
    assert failure.kind == "metadata"
    assert "40 product keys + 13 added by the searcher = 53 metadata keys" in failure.reason
    assert "at most 37 product keys" in failure.reason
    assert report.jobs == [] and env.jobs_fake.requests == []
