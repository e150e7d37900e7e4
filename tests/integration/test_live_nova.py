"""Nova Multimodal Embeddings on Bedrock: every modality at every dimension, every purpose.

Recorded in ``integration-report.json``: each vector's L2 norm (we assume unit length), the cosine
between the 3072-d vector truncated and re-normalised (``truncate_dimension``, what the
evaluation's dimension sweep does) and a direct call at the smaller dimension, and whether each
``embeddingPurpose`` is accepted. Audio and video are one-second clips generated here
(tests/integration/media.py) and read by Bedrock from the run's S3 bucket.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal_search._types import NOVA_DIMENSIONS
from crossmodal_search.embeddings import EmbeddingPurpose, NovaEmbeddings, S3Source
from crossmodal_search.stores import truncate_dimension
from tests.integration import media
from tests.integration.env import LiveEnv
from tests.integration.lifecycle import Usage

pytestmark = pytest.mark.integration

MODALITIES = ("text", "image", "audio", "video")
TEXT = "a red ball rolling on a wooden floor"
CLIP_SECONDS = 1.0
#: Unit length within this (we assume Nova returns L2-normalised vectors).
NORM_TOLERANCE = 1e-3
#: Matryoshka: truncated-and-renormalised vs asked-for-directly must be at least this close.
MIN_TRUNCATION_COSINE = 0.9

_n = len(NOVA_DIMENSIONS)
_purposes = len(EmbeddingPurpose)
LIVE_PLAN = Usage(
    nova_text_calls=_n + _purposes,
    nova_text_chars=(_n + _purposes) * len(TEXT),
    nova_image_calls=_n + 1,  # + one DOCUMENT_IMAGE
    nova_audio_calls=_n,
    nova_audio_seconds=_n * CLIP_SECONDS,
    nova_video_calls=_n + 1,  # + one AUDIO_VIDEO_SEPARATE
    nova_video_seconds=(_n + 1) * CLIP_SECONDS,
    s3_put_requests=2,
    s3_stored_bytes=200_000,
)

Vectors = dict[tuple[str, int], npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def clips(live: LiveEnv) -> dict[str, S3Source]:
    audio, audio_seconds = media.wav(CLIP_SECONDS)
    video, video_seconds = media.mov(CLIP_SECONDS)
    return {
        "audio": S3Source(live.upload("nova/clip.wav", audio, seconds=audio_seconds)),
        "video": S3Source(live.upload("nova/clip.mov", video, seconds=video_seconds)),
    }


@pytest.fixture(scope="module")
def nova(live: LiveEnv) -> NovaEmbeddings:
    return NovaEmbeddings(client=live.bedrock_runtime, max_concurrency=4)


@pytest.fixture(scope="module")
def vectors(nova: NovaEmbeddings, clips: dict[str, S3Source]) -> Vectors:
    out: Vectors = {}
    image = media.png()
    for d in NOVA_DIMENSIONS:
        out["text", d] = nova.embed_text(TEXT, dimension=d)
        out["image", d] = nova.embed_image(image, dimension=d)
        out["audio", d] = nova.embed_audio(clips["audio"], dimension=d)
        out["video", d] = nova.embed_video(clips["video"], dimension=d)
    return out


def test_every_modality_at_every_dimension_has_that_length_and_unit_norm(
    vectors: Vectors, live: LiveEnv
) -> None:
    norms = {
        f"{m}@{d}": float(np.linalg.norm(vectors[m, d]))
        for m in MODALITIES
        for d in NOVA_DIMENSIONS
    }
    live.report.record("nova", "norms", norms)
    low, high = min(norms.values()), max(norms.values())
    live.report.summary.append(f"Nova L2 norms over {len(norms)} vectors: {low:.6f}..{high:.6f}")
    for (m, d), v in vectors.items():
        assert v.shape == (d,), (m, d)
    off = {k: n for k, n in norms.items() if abs(n - 1.0) > NORM_TOLERANCE}
    assert not off, (
        f"Nova returned vectors that are not unit length: {off}. The cosine index does not "
        "care, but fusion and the Euclidean metric do: normalise in "
        "src/crossmodal_search/embeddings/_nova.py (NovaEmbeddings._vector)"
    )


def test_truncation_agrees_with_asking_for_the_smaller_dimension(
    vectors: Vectors, live: LiveEnv
) -> None:
    cosines = {}
    for m in MODALITIES:
        full = vectors[m, 3072]
        for d in NOVA_DIMENSIONS[:-1]:
            direct = vectors[m, d].astype(np.float64)
            cut = truncate_dimension(full, d).astype(np.float64)
            cosines[f"{m}@{d}"] = float(cut @ direct / np.linalg.norm(direct))
    live.report.record("nova", "truncation_cosine", cosines)
    worst = min(cosines, key=cosines.__getitem__)
    live.report.summary.append(
        f"Nova 3072-d truncated vs direct: cosine >= {cosines[worst]:.4f} (lowest: {worst})"
    )
    low = {k: c for k, c in cosines.items() if c < MIN_TRUNCATION_COSINE}
    assert not low, (
        f"truncating Nova's 3072-d vector is not close to asking for the dimension: {low} "
        f"(< {MIN_TRUNCATION_COSINE}). The dimension sweep of `crossmodal eval` "
        "(src/crossmodal_search/evaluation/_harness.py) and truncate_dimension's docs "
        "(src/crossmodal_search/stores/_matryoshka.py) assume they are close."
    )


@pytest.mark.parametrize("purpose", list(EmbeddingPurpose), ids=lambda p: p.value)
def test_every_purpose_is_accepted(
    purpose: EmbeddingPurpose, nova: NovaEmbeddings, live: LiveEnv
) -> None:
    vector = nova.embed_text(TEXT, purpose=purpose, dimension=256)
    live.report.record(
        "nova_purposes", purpose.value, {"accepted": True, "norm": float(np.linalg.norm(vector))}
    )
    assert vector.shape == (256,)


def test_separate_audio_and_video_vectors_and_document_images(
    nova: NovaEmbeddings, clips: dict[str, S3Source], live: LiveEnv
) -> None:
    separate = nova.embed_video(
        clips["video"], dimension=256, embedding_mode="AUDIO_VIDEO_SEPARATE"
    )
    page = nova.embed_document(media.png(), dimension=256)
    live.report.record("nova", "separate_types", sorted(separate))
    assert sorted(separate) == ["AUDIO", "VIDEO"]
    assert all(v.shape == (256,) for v in separate.values())
    assert page.shape == (256,)
