"""EmbeddingCache on its own and wired into NovaEmbeddings."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from crossmodal_search.embeddings import EmbeddingCache, NovaEmbeddings
from crossmodal_search.embeddings._cache import cache_key
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.testing import FakeBedrock
from tests.embeddings_helpers import MP4, image_bytes, nova


def test_put_get_roundtrip_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"
    vec = np.linspace(-1, 1, 256).astype(np.float32)
    with EmbeddingCache(path) as cache:
        assert cache.get("k") is None
        cache.put("k", vec)
        assert len(cache) == 1 and "k" in cache
    with EmbeddingCache(path) as cache:
        got = cache.get("k")
        assert got is not None and got.dtype == np.float32
        np.testing.assert_array_equal(got, vec)
        assert cache.hits == 1


def test_stored_as_float32_bytes_not_pickle(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with EmbeddingCache(path) as cache:
        cache.put("k", np.array([1.0, 2.0], dtype=np.float64))
    with closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT dim, vector FROM embeddings").fetchone()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert row[0] == 2
    assert bytes(row[1]) == np.array([1.0, 2.0], dtype="<f4").tobytes()


def test_closed_cache_and_bad_input(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError):
        cache.put("k", np.zeros((2, 2), dtype=np.float32))
    cache.close()
    cache.close()
    with pytest.raises(ConfigurationError, match="closed"):
        cache.get("k")
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigurationError):
        EmbeddingCache(bad)


def test_thread_safe_writes(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:

        def work(t: int) -> None:
            for i in range(50):
                cache.put(f"{t}-{i}", np.full(8, t, dtype=np.float32))
                assert cache.get(f"{t}-{i}") is not None

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(cache) == 200


def test_key_separates_every_setting() -> None:
    base = {
        "model_id": "m",
        "dimension": 1024,
        "purpose": "GENERIC_INDEX",
        "kind": "text",
        "options": "END",
        "content": b"x",
    }
    keys = {cache_key(**base)}  # type: ignore[arg-type]
    for field, other in [
        ("model_id", "m2"),
        ("dimension", 256),
        ("purpose", "GENERIC_RETRIEVAL"),
        ("kind", "image"),
        ("options", "START"),
        ("content", b"y"),
    ]:
        keys.add(cache_key(**{**base, field: other}))  # type: ignore[arg-type]
    assert len(keys) == 7


def test_cache_avoids_a_second_bedrock_call(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    emb, fake = nova(cache=path)
    first = emb.embed_text("red summer dress")
    again = emb.embed_text("red summer dress")
    np.testing.assert_array_equal(first, again)
    assert fake.calls == 1 and emb.calls == 1
    emb.close()
    # a new client (a re-indexing run) on the same file pays nothing either
    emb2, fake2 = nova(cache=path)
    batch = emb2.embed_texts(["red summer dress", "red summer dress"])
    np.testing.assert_array_equal(batch[0], first)
    assert fake2.calls == 0 and emb2.calls == 0


def test_cache_key_includes_purpose_dimension_and_detail(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb, fake = nova(cache=cache)
    emb.embed_text("a")
    emb.embed_text("a", purpose="GENERIC_RETRIEVAL")
    emb.embed_text("a", dimension=256)
    emb.embed_text("a", truncation="START")
    img = image_bytes()
    emb.embed_image(img)
    emb.embed_image(img, detail_level="DOCUMENT_IMAGE")
    assert fake.calls == 6 and len(cache) == 6
    emb.embed_image(img)
    emb.embed_text("a", dimension=256)
    assert fake.calls == 6
    assert cache.hits == 2


def test_cache_shared_between_model_ids(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    fake = FakeBedrock(model_id="other-model")
    NovaEmbeddings(client=fake.client(), model_id="other-model", cache=cache).embed_text("a")
    emb, fake2 = nova(cache=cache)
    emb.embed_text("a")  # same text, different model: not a hit
    assert fake2.calls == 1 and len(cache) == 2


def test_s3_sources_are_not_cached(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb, fake = nova(cache=cache)
    emb.embed_image("s3://bkt/a.png")
    emb.embed_image("s3://bkt/a.png")
    assert fake.calls == 2 and len(cache) == 0


def test_separate_video_vectors_cached_by_type(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb, fake = nova(cache=cache)
    first = emb.embed_video(MP4, embedding_mode="AUDIO_VIDEO_SEPARATE")
    again = emb.embed_video(MP4, embedding_mode="AUDIO_VIDEO_SEPARATE")
    combined = emb.embed_video(MP4)
    assert fake.calls == 2 and len(cache) == 3
    np.testing.assert_array_equal(first["AUDIO"], again["AUDIO"])
    np.testing.assert_array_equal(first["VIDEO"], again["VIDEO"])
    assert not np.array_equal(combined, first["VIDEO"])


def test_failed_calls_are_not_cached(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb, fake = nova(cache=cache)
    fake.fail_next("ValidationException")
    with pytest.raises(Exception, match="ValidationException"):
        emb.embed_text("a")
    assert len(cache) == 0
    emb.embed_text("a")
    assert len(cache) == 1
