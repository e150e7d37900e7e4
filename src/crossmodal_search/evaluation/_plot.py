"""Charts of a :class:`Comparison`: recall against text weight and against dimension."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_search.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    from crossmodal_search.evaluation._reports import Comparison

__all__ = ["plot_comparison"]


def plot_comparison(
    comparison: Comparison, path: str | os.PathLike[str], *, metric: str = "recall"
) -> Path:
    """Draw ``metric@k`` for every k against text weight and against dimension; save a PNG.

    Uses matplotlib's non-interactive Agg backend (no display needed).

    Args:
        comparison: The result of :func:`compare`.
        path: Output file (format from the suffix; ``.png`` recommended).
        metric: ``recall``, ``precision``, ``ndcg`` or ``hit_rate``.

    Raises:
        ConfigurationError: matplotlib is not installed (``pip install 'crossmodal-search[plot]'``).
        InvalidInputError: neither a text-weight nor a dimension sweep was run.
    """
    if metric not in ("recall", "precision", "ndcg", "hit_rate"):
        raise InvalidInputError(
            f"metric must be recall, precision, ndcg or hit_rate, not {metric!r}"
        )
    weights = sorted(
        (r.report for r in comparison.results if r.sweep == "text_weight"),
        key=lambda rep: rep.settings.text_weight,
    )
    dims = sorted(
        (r.report for r in comparison.results if r.sweep == "dimension"),
        key=lambda rep: rep.dimension,
    )
    if not weights and not dims:
        raise InvalidInputError("nothing to plot: the comparison has no weight or dimension sweep")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError(
            "plotting needs matplotlib: pip install 'crossmodal-search[plot]'"
        ) from None

    ks = comparison.results[0].report.k_values
    panels = [(p, x) for p, x in (("weight", weights), ("dimension", dims)) if x]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (name, reports) in zip(axes[0], panels, strict=True):
        if name == "weight":
            xs: list[float] = [rep.settings.text_weight for rep in reports]
            ax.set_xlabel("text weight (image weight = 1 - w)")
            ax.set_title(f"{metric} vs text weight ({reports[0].settings.search_mode} vectors)")
        else:
            xs = [float(rep.dimension) for rep in reports]
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(int(x)) for x in xs])
            ax.set_xlabel("dimension (Matryoshka truncation of stored vectors)")
            ax.set_title(f"{metric} vs dimension")
        for k in ks:
            ys = [rep.metric(f"{metric}@{k}") for rep in reports]
            ax.plot(xs, ys, marker="o", label=f"{metric}@{k}")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"best: {comparison.best.label} ({comparison.best_reason})", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
