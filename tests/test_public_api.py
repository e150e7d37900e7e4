"""The curated public surface: complete, sorted, lazily loaded, no private leaks."""

from __future__ import annotations

import subprocess
import sys

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
