"""The package's layers depend one way:
embeddings & stores <- search <- datasets <- evaluation <- web <- integrations <- cli.

``integrations`` (the MCP server, the LangChain and LlamaIndex retrievers) sits at the top with
the CLI: it reuses the web layer's checks of untrusted photos, and ``crossmodal mcp`` runs it.

Every import in every module under ``src/crossmodal_search`` is parsed with :mod:`ast`, including
imports under ``if TYPE_CHECKING:`` and inside functions, so a lower layer cannot reach up even
for a type hint. ``testing/`` (fakes for tests) is exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crossmodal_search

PACKAGE = "crossmodal_search"
ROOT = Path(crossmodal_search.__file__).resolve().parent

#: Top-level part of the package -> the higher parts it must never import.
_FORBIDDEN: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        (
            "embeddings",
            "stores",
            "_aws",
            "_limiter",
            "_types",
            "_constants",
            "_json",
            "_batching",
            "_version",
            "errors",
        ),
        frozenset({"search", "datasets", "evaluation", "cli", "web", "integrations"}),
    ),
    "search": frozenset({"datasets", "evaluation", "cli", "web", "integrations"}),
    "datasets": frozenset({"evaluation", "cli", "web", "integrations"}),
    "evaluation": frozenset({"cli", "web", "integrations"}),
    "web": frozenset({"cli", "integrations"}),
    "integrations": frozenset({"cli"}),
}


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``, relative ones resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from crossmodal_search import search`` imports the sub-package itself.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _part(module: str) -> str | None:
    """The top-level part of the package ``module`` belongs to (None outside the package)."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


def _violations(path: Path) -> list[str]:
    part = _part(_module_name(path))
    forbidden = _FORBIDDEN.get(part or "", frozenset())
    return [
        f"{path.relative_to(ROOT.parent)}:{line} imports {module}"
        for line, module in _imported(
            path.read_text(encoding="utf-8"),
            _module_name(path),
            is_package=path.name == "__init__.py",
        )
        if _part(module) in forbidden
    ]


MODULES = sorted(p for p in ROOT.rglob("*.py") if _part(_module_name(p)) != "testing")


def test_every_layer_is_checked() -> None:
    parts = {_part(_module_name(p)) for p in MODULES}
    assert (
        set(_FORBIDDEN)
        - {"_aws", "_types", "_constants", "_json", "_batching", "_version", "errors"}
        <= parts
    )
    assert {"cli", "web", "integrations"} <= parts


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_never_import_higher_ones(path: Path) -> None:
    assert _violations(path) == []


def test_the_check_sees_type_checking_relative_and_submodule_imports() -> None:
    # A made-up embeddings module that reaches up in three ways and down once.
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from crossmodal_search.search import CrossmodalSearcher\n"
        "def f():\n"
        "    from ..evaluation import evaluate\n"
        "from crossmodal_search import cli\n"
        "from crossmodal_search.stores import VectorStore\n"
    )
    imports = _imported(source, "crossmodal_search.embeddings._probe", is_package=False)
    assert {m for _, m in imports if _part(m) in _FORBIDDEN["embeddings"]} == {
        "crossmodal_search.search",
        "crossmodal_search.search.CrossmodalSearcher",
        "crossmodal_search.evaluation",
        "crossmodal_search.evaluation.evaluate",
        "crossmodal_search.cli",
    }


def _private_imports(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """Imports of another sub-package's private module (``crossmodal_search.stores._open``
    from ``cli``): a package is used through its public ``__init__``. The package root's own
    private modules (``_aws``, ``_types``, ``_json``, ...) are shared infrastructure."""
    own = _part(module)
    found = []
    for line, target in _imported(source, module, is_package=is_package):
        parts = target.split(".")
        if (
            parts[0] == PACKAGE
            and len(parts) >= 3
            and parts[2].startswith("_")
            and parts[1] != own
            and not parts[1].startswith("_")
        ):
            found.append((line, target))
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_reaches_into_another_packages_private_modules(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    found = _private_imports(source, _module_name(path), is_package=path.name == "__init__.py")
    assert [f"{path.relative_to(ROOT.parent)}:{line} imports {m}" for line, m in found] == []


def test_the_private_import_check_sees_them() -> None:
    source = (
        "from crossmodal_search.stores._open import parse_store_spec\n"  # another package's
        "from crossmodal_search.cli._common import top_k\n"  # its own package's: fine
        "from crossmodal_search._aws import build_client\n"  # the root's: fine
        "from crossmodal_search.stores import open_store\n"  # public: fine
    )
    found = _private_imports(source, "crossmodal_search.cli._probe", is_package=False)
    assert [m for _, m in found] == [
        "crossmodal_search.stores._open",
        "crossmodal_search.stores._open.parse_store_spec",
    ]
