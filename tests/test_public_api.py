"""The curated public surface: complete, sorted, lazily loaded, no private leaks."""

from __future__ import annotations

import subprocess
import sys

import pytest

import crossmodal_search


def test_all_is_sorted_and_every_name_resolves() -> None:
    names = [n for n in crossmodal_search.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in crossmodal_search.__all__:
        assert getattr(crossmodal_search, name) is not None


def test_lazy_map_matches_all() -> None:
    lazy = set(crossmodal_search._LAZY)
    assert lazy == set(crossmodal_search.__all__) - {"__version__"}


def test_public_objects_come_from_public_namespaces() -> None:
    # An object re-exported at top level must also be reachable from a public sub-package
    # (or be defined in one), so users never need to import a _private module.
    for name, module in crossmodal_search._LAZY.items():
        if module.rsplit(".", 1)[-1].startswith("_"):
            assert name == "RetryPolicy", f"{name} only reachable through {module}"


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        _ = crossmodal_search.DoesNotExist
    except AttributeError as exc:
        assert "DoesNotExist" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_load_boto3() -> None:
    code = "import sys, crossmodal_search; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_public_signatures_name_their_types_not_any() -> None:
    import inspect
    import re

    from crossmodal_search.embeddings import BatchEmbeddingJobs, SegmentedEmbeddingJobs, embed_pdf
    from crossmodal_search.search import index_media, index_with_batch
    from crossmodal_search.stores import VectorRecord, open_store
    from crossmodal_search.testing import FakeBedrockJobs

    for fn in (
        VectorRecord.create,
        open_store,
        index_with_batch,
        index_media,
        embed_pdf,
        SegmentedEmbeddingJobs.__init__,
        BatchEmbeddingJobs.__init__,
        FakeBedrockJobs.__init__,
        FakeBedrockJobs.client,
        FakeBedrockJobs.attach,
    ):
        sig = inspect.signature(fn)
        annotations = [str(p.annotation) for p in sig.parameters.values()]
        annotations.append(str(sig.return_annotation))
        assert not [a for a in annotations if re.search(r"\bAny\b", a)], fn.__qualname__


def test_open_store_options_are_the_store_constructors_keywords() -> None:
    import inspect

    from crossmodal_search.stores import LocalVectorStore, S3VectorsStore, StoreOptions

    keywords = set()
    for cls in (LocalVectorStore, S3VectorsStore):
        params = inspect.signature(cls.__init__).parameters.values()
        keywords |= {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    options = set().union(*(getattr(c, "__annotations__", {}) for c in StoreOptions.__mro__))
    assert options == keywords - {"dimension"}


def test_embedder_protocol_and_eval_adapters_document_their_members() -> None:
    from crossmodal_search.embeddings import Embedder
    from crossmodal_search.evaluation import CountingEmbedder, TruncatingEmbedder

    for name in (
        "model_id",
        "dimension",
        "embed_text",
        "embed_image",
        "embed_texts",
        "embed_images",
    ):
        doc = Embedder.__dict__[name].__doc__
        assert doc and doc.strip(), f"Embedder.{name}"
    for cls in (CountingEmbedder, TruncatingEmbedder):
        doc = cls.__dict__["dimension"].__doc__
        assert doc and doc.strip(), f"{cls.__name__}.dimension"


def test_names_that_left_the_top_level_still_resolve_with_a_deprecation_warning() -> None:
    import crossmodal_search
    from crossmodal_search import datasets

    for name in ("load_abo", "write_sample_catalog"):
        with pytest.warns(DeprecationWarning, match=f"crossmodal_search.datasets.{name}"):
            assert getattr(crossmodal_search, name) is getattr(datasets, name)
        assert name not in crossmodal_search.__all__


@pytest.mark.parametrize(
    ("old", "new"),
    [("AsyncEmbeddingJobs", "SegmentedEmbeddingJobs"), ("AsyncJob", "SegmentedJob")],
)
def test_renamed_job_classes_still_import_under_their_old_names_with_a_warning(
    old: str, new: str
) -> None:
    import crossmodal_search.embeddings as embeddings

    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use {new}"):
        value = getattr(embeddings, old)
    assert value is getattr(embeddings, new)
    assert old not in embeddings.__all__ and new in embeddings.__all__
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = embeddings.NoSuchThing


def test_the_old_name_works_in_a_from_import() -> None:
    with pytest.warns(DeprecationWarning, match="SegmentedEmbeddingJobs"):
        from crossmodal_search.embeddings import AsyncEmbeddingJobs
    from crossmodal_search.embeddings import SegmentedEmbeddingJobs

    assert AsyncEmbeddingJobs is SegmentedEmbeddingJobs
