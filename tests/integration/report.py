"""``integration-report.json``: what one live run did, found and cost, machine-readable."""

from __future__ import annotations

import json
import platform
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.integration.behaviours import Behaviour, Step, _plain
from tests.integration.lifecycle import PRICE_SOURCES, PRICES, Usage

__all__ = ["LiveReport", "sdk_versions"]


def sdk_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour the report describes."""
    out = {"python": platform.python_version()}
    for name in ("crossmodal-search", "boto3", "botocore", "moto", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class LiveReport:
    """Sections filled while the suite runs; :meth:`write` saves them as JSON."""

    mode: str
    region: str | None = None
    account_id: str | None = None
    run_id: str | None = None
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    budget_usd: float | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    behaviours: list[dict[str, Any]] = field(default_factory=list)
    nova: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    skipped_for_budget: list[str] = field(default_factory=list)
    cleanup: dict[str, Any] = field(default_factory=dict)
    #: Lines printed in the terminal summary at the end of the run (e.g. retrieval quality).
    summary: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def behaviour(
        self,
        behaviour: Behaviour,
        answered: list[Step],
        differences: list[str],
        *,
        index_mode: str | None,
        ours: dict[str, list[Step]] | None = None,
    ) -> None:
        """Record one pinned behaviour: our assumption, the service's answer, pass or fail.

        ``ours`` holds what FakeS3Vectors and LocalVectorStore answered to the same script.
        """
        with self._lock:
            self.behaviours.append(
                {
                    "id": behaviour.id,
                    "title": behaviour.title,
                    "assumption": behaviour.assumption,
                    "where": behaviour.where,
                    "requests": [repr(step) for step in behaviour.steps],
                    "assumed": _plain(list(behaviour.expected)),
                    "answered": _plain(answered),
                    "ours": _plain(ours or {}),
                    "index_mode": index_mode,
                    "agrees": not differences,
                    "differences": differences,
                }
            )

    def record(self, section: str, key: str, value: Any) -> None:
        """Set ``sections[section][key]`` (JSON-safe values)."""
        with self._lock:
            self.sections.setdefault(section, {})[key] = _plain(value)

    def write(self, path: Path, *, measured: dict[str, Usage]) -> None:
        total = Usage()
        for usage in measured.values():
            total = total + usage
        planned = self.plan.get("modules", {})
        over = {
            module: usage.over(Usage(**planned[module]["usage"]))
            for module, usage in measured.items()
            if module in planned and usage.over(Usage(**planned[module]["usage"]))
        }
        document = {
            "mode": self.mode,
            "region": self.region,
            "account_id": self.account_id,
            "run_id": self.run_id,
            "started": self.started,
            "finished": datetime.now(timezone.utc).isoformat(),
            "versions": sdk_versions(),
            "budget_usd": self.budget_usd,
            "prices": {"assumed": PRICES.__dict__, "sources": PRICE_SOURCES},
            "plan": self.plan,
            "measured": {
                "modules": {m: u.to_json() for m, u in sorted(measured.items())},
                "total": total.to_json(),
                "estimate_usd": round(total.estimate(), 6),
                "bound_usd": round(total.bound(), 6),
                "over_plan": {m: {k: list(v) for k, v in o.items()} for m, o in over.items()},
            },
            "created": self.created,
            "skipped_for_budget": self.skipped_for_budget,
            "behaviours": self.behaviours,
            "behaviours_summary": {
                "agree": sum(b["agrees"] for b in self.behaviours),
                "differ": [b["id"] for b in self.behaviours if not b["agrees"]],
            },
            **self.sections,
            "tests": dict(sorted(self.outcomes.items())),
            "cleanup": self.cleanup,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
