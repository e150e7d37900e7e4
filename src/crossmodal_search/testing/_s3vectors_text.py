"""``FakeS3Vectors``'s index modes, text search configurations and ``QueryVectors``.

Documented by S3 Vectors (and enforced here): a bucket's ``defaultIndexMode`` decides the mode of
its new indexes (``CLASSIC`` before 30 Sep 2026, ``ENHANCED`` after); ``UpdateIndexMode`` sets
``ENHANCED`` on any index and ``CLASSIC`` only in older buckets; ``UpdateMetadataConfiguration``
takes ``add`` or ``delete`` (not both) on ``ENHANCED`` indexes; ``queryTexts`` (1-10 entries of
1-1,024 characters, distinct keys) need an ``ENHANCED`` index, ``queryMode=CLASSIC`` is refused
on one; full-text queries rank by BM25, hybrid ones fuse one BM25 ranking per text entry with
the vector ranking by Reciprocal Rank Fusion; ``scores`` only with ``returnScores`` and
``queryTexts``, ``fused`` only for hybrid, ``vectorDistance`` when the record matched the vector
search.

Assumed where the service says nothing (docs/hybrid.md lists them): every refusal is a
``ValidationException`` except a key configured twice and a change while a configuration is
``BUILDING`` (``ConflictException``); at most 10 configurations per index; ``status`` may not be
sent; ``CLASSIC`` is refused for an index with text configurations and as the default of a new
bucket; a ``BUILDING`` key cannot be queried; the filter applies before every ranking (IDF stays
that of the whole index, as in Lucene); full-text-only ranks by the sum of BM25 scores over the
keys; RRF uses ``k = 60`` and the top ``topK`` of each ranking; ``bm25Scores`` name every queried
key a result matched; ties go by key. The ranking itself is ``LocalVectorStore``'s
(``stores/_hybrid.py``), so the fake and the local store answer alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from crossmodal_search.errors import InvalidFilterError
from crossmodal_search.stores._filter import compile_filter
from crossmodal_search.stores._hybrid import rank_text
from crossmodal_search.stores._text import Language, TextQuery
from crossmodal_search.testing._s3vectors_data import check_vector
from crossmodal_search.testing._s3vectors_model import (
    INDEX_MODES,
    LANGUAGES,
    MAX_METADATA_KEY_CHARS,
    MAX_QUERY_TEXT_CHARS,
    MAX_QUERY_TEXTS,
    MAX_TEXT_CONFIGURATIONS,
    MAX_TOP_K,
    Bucket,
    Index,
    ServiceError,
    TextConfig,
    decode_token,
    encode_token,
    validation,
)

__all__ = [
    "create_text_configs",
    "metadata_configuration",
    "put_default_index_mode",
    "query_vectors",
    "update_index_mode",
    "update_metadata_configuration",
]

Ranking = list[tuple[str, float]]  # (key, score or distance), best first


# -- modes ----------------------------------------------------------------------------------------


def _mode(value: object, name: str) -> str:
    if value not in INDEX_MODES:
        raise validation(f"{name} must be one of {', '.join(INDEX_MODES)}, got {value!r}")
    return str(value)


def put_default_index_mode(bucket: Bucket, params: Mapping[str, Any]) -> dict[str, Any]:
    """``PutVectorBucketDefaultIndexMode``: the mode of indexes created from now on."""
    mode = _mode(params.get("defaultIndexMode"), "defaultIndexMode")
    if mode == "CLASSIC" and not bucket.legacy:
        raise validation(
            "CLASSIC is available only for vector buckets created before September 30, 2026"
        )
    bucket.default_mode = mode
    return {}


def update_index_mode(bucket: Bucket, index: Index, params: Mapping[str, Any]) -> dict[str, Any]:
    """``UpdateIndexMode``: ENHANCED on any index, CLASSIC on older buckets' indexes only."""
    mode = _mode(params.get("indexMode"), "indexMode")
    if mode == "CLASSIC":
        if not bucket.legacy:
            raise validation(
                "CLASSIC is available only for vector indexes in vector buckets created before "
                "September 30, 2026"
            )
        if index.text_configs:
            raise validation(
                "a vector index with text search configurations cannot be CLASSIC; delete them "
                "first"
            )
    index.mode = mode
    return {}


# -- text search configurations -------------------------------------------------------------------


def _configs(raw: object, *, what: str) -> dict[str, TextConfig]:
    if not isinstance(raw, list):
        raise validation(f"{what} must be a list")
    if len(raw) > MAX_TEXT_CONFIGURATIONS:
        raise validation(f"{what} has {len(raw)} items; the maximum is {MAX_TEXT_CONFIGURATIONS}")
    out: dict[str, TextConfig] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise validation(f"{what} items must be objects")
        key = item.get("metadataKey")
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise validation(f"metadataKey must be 1 to {MAX_METADATA_KEY_CHARS} characters")
        if "status" in item:
            raise validation("status is reported by GetIndex and cannot be set")
        language = item.get("language")
        if language is not None and language not in LANGUAGES:
            raise validation(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        if key in out:
            raise validation(f"Specify no more than one configuration for metadata key {key!r}")
        out[key] = TextConfig(cast("Language | None", language))
    return out


def create_text_configs(config: Mapping[str, Any], mode: str) -> dict[str, TextConfig]:
    """The ``textSearchConfigurations`` of a ``CreateIndex`` (empty when there are none)."""
    raw = config.get("textSearchConfigurations")
    if raw is None:
        return {}
    configs = _configs(raw, what="textSearchConfigurations")
    if configs and mode != "ENHANCED":
        raise validation(
            "text search configurations require an ENHANCED vector index; the vector bucket's "
            "default index mode is CLASSIC"
        )
    return configs


def update_metadata_configuration(
    index: Index, params: Mapping[str, Any], *, hold: bool
) -> dict[str, Any]:
    """``UpdateMetadataConfiguration``: add (backfilled now; ``BUILDING`` while ``hold``) or
    delete text search configurations."""
    add, delete = params.get("add"), params.get("delete")
    if (add is None) == (delete is None):
        raise validation("Specify either add or delete, but not both")
    if index.mode != "ENHANCED":
        raise validation("UpdateMetadataConfiguration requires a vector index in ENHANCED mode")
    building = [k for k, c in index.text_configs.items() if c.status == "BUILDING"]
    if building:
        raise ServiceError(
            "ConflictException",
            f"text search configurations {building} are still BUILDING; retry when ACTIVE",
        )
    if add is not None:
        configs = _configs((add or {}).get("textSearchConfigurations", []), what="add")
        if not configs:
            raise validation("add must contain at least 1 text search configuration")
        already = [k for k in configs if k in index.text_configs]
        if already:
            raise ServiceError(
                "ConflictException", f"metadata keys {already} already have a configuration"
            )
        if len(index.text_configs) + len(configs) > MAX_TEXT_CONFIGURATIONS:
            raise validation(
                f"a vector index has at most {MAX_TEXT_CONFIGURATIONS} text search configurations"
            )
        for key, config in configs.items():
            config.status = "BUILDING" if hold else "ACTIVE"
            index.add_text(key, config)
    else:
        raw = (delete or {}).get("textSearchConfigurations")
        if not isinstance(raw, list) or not raw:
            raise validation("delete must name at least 1 metadata key")
        keys = [item.get("metadataKey") if isinstance(item, dict) else None for item in raw]
        unknown = [k for k in keys if k not in index.text_configs]
        if unknown:
            raise validation(f"metadata keys {unknown} have no text search configuration")
        for key in dict.fromkeys(cast("list[str]", keys)):
            index.drop_text(key)
    return {"indexArn": index.arn}


def metadata_configuration(index: Index) -> dict[str, Any] | None:
    """``GetIndex``'s ``metadataConfiguration`` (None when there is nothing to say)."""
    out: dict[str, Any] = {}
    if index.non_filterable:
        out["nonFilterableMetadataKeys"] = list(index.non_filterable)
    if index.text_configs:
        configs = []
        for key, config in index.text_configs.items():
            item: dict[str, Any] = {"metadataKey": key}
            if config.language is not None:
                item["language"] = config.language
            item["status"] = config.status
            configs.append(item)
        out["textSearchConfigurations"] = configs
    return out or None


# -- QueryVectors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    top_k: int
    vector: npt.NDArray[np.float32] | None
    texts: tuple[tuple[str, str], ...]
    mask: npt.NDArray[np.bool_] | None


def query_vectors(index: Index, params: Mapping[str, Any], *, page_size: int | None) -> Any:
    """``QueryVectors``: vector, full-text or hybrid, exact and pre-filtered.

    ``page_size`` splits the results into pages joined by ``nextToken``.
    """
    request = _parse(index, params)
    if request.texts:
        items = _ranked_items(index, request, params)
    else:
        items = _vector_items(index, request, params)
    response: dict[str, Any] = {"distanceMetric": index.distance_metric}
    fingerprint = hashlib.sha256(
        json.dumps({k: v for k, v in params.items() if k != "nextToken"}, sort_keys=True).encode()
    ).hexdigest()[:32]
    start = 0
    if params.get("nextToken") is not None:
        state = decode_token(params["nextToken"])
        if state.get("query") != fingerprint or not isinstance(state.get("offset"), int):
            raise validation("nextToken does not belong to this query; re-issue the query")
        start = state["offset"]
    if page_size is not None and len(items) - start > page_size:
        response["nextToken"] = encode_token({"query": fingerprint, "offset": start + page_size})
        response["vectors"] = items[start : start + page_size]
    else:
        response["vectors"] = items[start:]
    return response


def _parse(index: Index, params: Mapping[str, Any]) -> _Request:
    top_k = params.get("topK")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise validation(f"topK must be between 1 and {MAX_TOP_K}")
    raw_texts = params.get("queryTexts")
    if params.get("queryVector") is None and raw_texts is None:
        raise validation("A request must include queryVector, queryTexts, or both")
    mode = index.mode
    if params.get("queryMode") is not None:
        mode = _mode(params["queryMode"], "queryMode")
        if mode == "CLASSIC" and index.mode == "ENHANCED":
            raise validation("You can't specify CLASSIC for an ENHANCED index")
    texts = _query_texts(index, raw_texts) if raw_texts is not None else ()
    vector = None
    if params.get("queryVector") is not None:
        vector = check_vector(params["queryVector"], index, what="queryVector")
    mask = None
    if params.get("filter") is not None:
        try:
            compiled = compile_filter(
                params["filter"],
                non_filterable=index.non_filterable,
                index_mode="ENHANCED" if mode == "ENHANCED" else "CLASSIC",
            )
        except InvalidFilterError as exc:
            raise validation(f"Invalid filter: {exc}") from exc
        mask = np.fromiter(
            (compiled.matches(index.vectors[k].metadata) for k in index.rows),
            dtype=bool,
            count=len(index.rows),
        )
    return _Request(top_k, vector, texts, mask)


def _query_texts(index: Index, raw: object) -> tuple[tuple[str, str], ...]:
    if index.mode != "ENHANCED":
        raise validation("Full-text and hybrid searches require a vector index in ENHANCED mode")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_QUERY_TEXTS:
        raise validation(f"queryTexts must have 1 to {MAX_QUERY_TEXTS} entries")
    out: dict[str, str] = {}
    for item in raw:
        key, text = item.get("metadataKey"), item.get("text")
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise validation(f"metadataKey must be 1 to {MAX_METADATA_KEY_CHARS} characters")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_QUERY_TEXT_CHARS:
            raise validation(f"text must be 1 to {MAX_QUERY_TEXT_CHARS} characters")
        if key in out:
            raise validation(f"Each queryTexts entry must target a distinct key; {key!r} twice")
        config = index.text_configs.get(key)
        if config is None:
            raise validation(f"metadata key {key!r} is not full-text searchable on this index")
        if config.status != "ACTIVE":
            raise validation(
                f"the text search configuration of {key!r} is {config.status} and isn't yet "
                "serving queries"
            )
        out[key] = text
    return tuple(out.items())


def _vector_ranking(index: Index, request: _Request) -> Ranking:
    """Exact nearest records (among the filter's), best first, ties by key; float32 distances."""
    assert request.vector is not None
    keys = [k for i, k in enumerate(index.rows) if request.mask is None or request.mask[i]]
    if not keys:
        return []
    matrix = np.stack([index.vectors[k].data for k in keys]).astype(np.float64)
    q = request.vector.astype(np.float64)
    if index.distance_metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)
        distances = 1.0 - (matrix @ q) / norms
        # Identical vectors can come out a hair below 0 in floating point.
        np.clip(distances, 0.0, 2.0, out=distances)
    else:
        distances = np.linalg.norm(matrix - q, axis=1)
    ranked = sorted(zip(distances.tolist(), keys, strict=True))[: request.top_k]
    # The service computes and returns float32 distances.
    return [(key, float(np.float32(distance))) for distance, key in ranked]


def _item(
    index: Index, key: str, params: Mapping[str, Any], scores: dict[str, Any] | None
) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key}
    if scores is not None and params.get("returnScores"):
        item["scores"] = scores
    if params.get("returnMetadata"):
        item["metadata"] = index.vectors[key].metadata
    return item


def _vector_items(index: Index, request: _Request, params: Mapping[str, Any]) -> list[Any]:
    out = []
    for key, distance in _vector_ranking(index, request):
        item = _item(index, key, params, None)
        if params.get("returnDistance"):
            item["distance"] = distance
        out.append(item)
    return out


def _ranked_items(index: Index, request: _Request, params: Mapping[str, Any]) -> list[Any]:
    """Full-text or hybrid results, ranked as ``LocalVectorStore`` ranks them."""
    hybrid = request.vector is not None
    ranked = rank_text(
        [TextQuery(key, text) for key, text in request.texts],
        index.text.__getitem__,
        index.rows,
        index.row_of,
        top_k=request.top_k,
        mask=request.mask,
        vector_ranking=_vector_ranking(index, request) if hybrid else None,
    )
    out = []
    for key, _, bm25, fused, distance in ranked:
        scores: dict[str, Any] = {}
        if fused is not None:
            scores["fused"] = fused
        if bm25:
            scores["bm25Scores"] = [{"metadataKey": k, "score": v} for k, v in bm25.items()]
        if distance is not None:
            scores["vectorDistance"] = distance
        item = _item(index, key, params, scores)
        if distance is not None and params.get("returnDistance"):
            item["distance"] = distance
        out.append(item)
    return out
