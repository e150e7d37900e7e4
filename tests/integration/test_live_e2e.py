"""End to end: the sample catalog indexed with Nova into S3 Vectors, searched, quality printed.

The same steps as ``crossmodal eval --sample DIR --embedder nova --store s3vectors://...``: the
demo catalog and its labelled queries (``write_sample_evaluation``), ``CrossmodalSearcher.index``
and the evaluation harness's ``evaluate``. Budget-gated (``LIVE_GATED``): about 140 Bedrock
calls, most of them images.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal_search.datasets import (
    load_abo,
    write_sample_catalog,
)
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.evaluation import (
    EvalSettings,
    evaluate,
    read_queries,
    write_sample_evaluation,
)
from crossmodal_search.search import CrossmodalSearcher
from crossmodal_search.stores import S3VectorsStore
from tests.integration.env import LiveEnv
from tests.integration.lifecycle import Usage

pytestmark = pytest.mark.integration

LIVE_GATED = True
DIMENSION = 1024
K = (1, 5, 10)
#: Quality Nova must reach on the toy catalog (products in six colours and six kinds).
MIN_RECALL_AT_10 = 0.5
# 38 products (a text and an image each) and 69 labelled queries: `make integration-rehearsal`
# measured 94 text and 64 image embeddings, one PutVectors of 1.2 MB and 69 queries.
LIVE_PLAN = Usage(
    nova_text_calls=140,
    nova_text_chars=20_000,
    nova_image_calls=110,
    s3v_put_requests=10,
    s3v_put_bytes=2_000_000,
    s3v_query_requests=400,
    s3v_query_processed_bytes=400 * 2_000_000,
    s3v_other_requests=60,
)


def test_sample_catalog_with_nova_and_s3_vectors(live: LiveEnv, tmp_path: Path) -> None:
    root = write_sample_catalog(tmp_path / "catalog")
    files = write_sample_evaluation(root)
    products = load_abo(root).products
    queries = read_queries(files.queries)
    searcher = CrossmodalSearcher(
        NovaEmbeddings(client=live.bedrock_runtime, dimension=DIMENSION, max_concurrency=8),
        S3VectorsStore(
            live.run.vector_bucket, "e2e-sample", client=live.s3vectors, dimension=DIMENSION
        ),
        max_concurrency=8,
    )

    ingest = searcher.index(products)
    report = evaluate(searcher, queries, k_values=K, settings=EvalSettings(), max_concurrency=4)

    overall = report.overall.metrics
    by_type = {t: s.metrics for t, s in report.by_query_type.items()}
    live.report.record(
        "e2e",
        "sample_catalog",
        {
            "products": len(products),
            "indexed": ingest.indexed,
            "failed": [f.product_id for f in ingest.failed],
            "queries": len(queries),
            "settings": report.settings.label,
            "overall": overall,
            "by_query_type": by_type,
            "embed_calls": ingest.embed_calls + report.embed_calls,
        },
    )
    lines = [f"sample catalog, Nova {DIMENSION}-d on S3 Vectors ({report.settings.label}):"]
    for name, metrics in {"all": overall, **by_type}.items():
        shown = "  ".join(f"{m}={metrics[m]:.3f}" for m in ("recall@1", "recall@10", "ndcg@10"))
        lines.append(f"  {name:<11} {shown}  mrr={metrics['mrr']:.3f}")
    live.report.summary.extend(lines)  # printed at the end of the run
    assert not ingest.failed, ingest.failed
    assert ingest.indexed == len(products)
    assert overall["recall@10"] >= MIN_RECALL_AT_10, (
        f"Nova on S3 Vectors finds too little of the sample catalog: {overall}"
    )
