"""Choosing an embedder: Nova when asked (or when credentials exist), else the offline one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from crossmodal_search.embeddings._cache import EmbeddingCache
from crossmodal_search.embeddings._offline import OfflineEmbedder
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3

    from crossmodal_search.embeddings._protocol import Embedder

__all__ = ["EmbedderKind", "make_embedder"]

EmbedderKind = Literal["auto", "nova", "offline"]


def make_embedder(
    kind: EmbedderKind = "auto",
    *,
    dimension: int = 1024,
    region_name: str | None = None,
    session: boto3.Session | None = None,
    cache: EmbeddingCache | str | os.PathLike[str] | None = None,
) -> tuple[Embedder, str]:
    """Build an embedder and say which one and why.

    Args:
        kind: ``"nova"`` (Amazon Bedrock; never falls back), ``"offline"`` (deterministic
            lexical/colour features, no network) or ``"auto"`` (Nova when boto3 finds
            credentials, offline otherwise).
        dimension: output dimension (256/384/1024/3072 for Nova).
        region_name: Bedrock region (Nova only).
        session: a ``boto3.Session`` to use (Nova only).
        cache: embedding cache for Nova (path or :class:`EmbeddingCache`); ignored offline,
            where embedding costs nothing.

    Returns:
        ``(embedder, reason)``, e.g. ``(OfflineEmbedder(...), "offline embedder: no AWS ...")``.

    Raises:
        ConfigurationError: unknown ``kind``; ``"nova"`` without AWS credentials.

    Example:
        >>> embedder, why = make_embedder("offline", dimension=256)
        >>> why
        'offline embedder (requested): lexical text features, colour/layout image features'
    """
    offline_note = "lexical text features, colour/layout image features"
    if kind == "offline":
        return OfflineEmbedder(dimension=dimension), f"offline embedder (requested): {offline_note}"
    if kind not in ("auto", "nova"):
        raise ConfigurationError(f"unknown embedder kind {kind!r}; use auto, nova or offline")

    import boto3

    # boto3's default session when there is one (boto3.setup_default_session(profile_name=...)),
    # as crossmodal_search._aws.build_client does.
    sess = session or boto3.DEFAULT_SESSION or boto3.Session(region_name=region_name)
    credentials = sess.get_credentials()
    if credentials is None:
        if kind == "nova":
            raise ConfigurationError(
                "the Nova embedder needs AWS credentials and boto3 found none (set AWS_PROFILE "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or choose the offline embedder"
            )
        return (
            OfflineEmbedder(dimension=dimension),
            f"offline embedder (auto: no AWS credentials found): {offline_note}; "
            "not semantic, use Nova for real search",
        )
    from crossmodal_search.embeddings._nova import NovaEmbeddings

    nova = NovaEmbeddings(session=sess, region_name=region_name, dimension=dimension, cache=cache)
    method = getattr(credentials, "method", None) or "the boto3 credential chain"
    region = nova.client.meta.region_name
    why = "requested" if kind == "nova" else f"auto: AWS credentials found via {method}"
    return nova, f"Amazon Nova {nova.model_id} in {region}, dimension {dimension} ({why})"
