"""Opt-in gate, resources, budget and report of the live AWS suite (docs/live-aws.md).

``CROSSMODAL_LIVE_AWS`` selects the mode:

* unset (CI, ``make test``): every test here skips with one line saying how to run them; nothing
  is imported from AWS and nothing reaches the network.
* ``1``: the real services, with the credentials and region of the usual AWS chain. With no
  credentials or no region the run stops before creating anything.
* ``rehearsal``: the same tests against the package's fakes (FakeS3Vectors, FakeBedrock,
  FakeBedrockJobs) and moto's S3. It proves the suite's wiring, lifecycle and cost accounting
  offline; it proves nothing about AWS, so the checks of the real model's properties skip.

Every test module declares ``LIVE_PLAN`` (a :class:`~tests.integration.lifecycle.Usage` bound of
what it does) and may set ``LIVE_GATED = True`` (a larger media test run only when it fits in
``--live-budget-usd``). Before the first test the suite prints what it will create and the cost
bound; at the end it writes ``integration-report.json`` and removes what it created.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import isolate_from_aws
from tests.integration.env import LiveEnv
from tests.integration.lifecycle import (
    LIFECYCLE_PLAN,
    NAME_PREFIX,
    PRICE_SOURCES,
    TAG_KEY,
    LiveRun,
    Usage,
    UsageMeter,
)
from tests.integration.report import LiveReport

MODE_VARIABLE = "CROSSMODAL_LIVE_AWS"
HOW_TO_RUN = (
    f"live AWS suite not enabled: run `{MODE_VARIABLE}=1 AWS_REGION=us-east-1 make integration` "
    "with AWS credentials (it creates and deletes cmx-live-* buckets, default budget "
    "$0.03; docs/live-aws.md), or `make integration-rehearsal` to run it against the fakes"
)
REHEARSAL_ACCOUNT = "123456789012"


def live_mode() -> str | None:
    """``"live"``, ``"rehearsal"`` or ``None`` (not enabled), from the environment."""
    value = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if value in ("1", "true", "yes", "live"):
        return "live"
    if value == "rehearsal":
        return "rehearsal"
    return None


# -- before the first test: preflight, plan, budget ----------------------------------------------


@dataclass
class Preflight:
    region: str
    account_id: str
    session: Any = None  # boto3.Session in live mode


@dataclass
class _State:
    mode: str | None = None
    preflight: Preflight | None = None
    report: LiveReport | None = None
    meter: UsageMeter = field(default_factory=UsageMeter)
    plan_lines: list[str] = field(default_factory=list)


STATE = _State()


def _preflight_live() -> Preflight:
    """Credentials and region, checked before anything is created; exits the run if missing."""
    import boto3

    session = boto3.Session()
    region = os.environ.get("CROSSMODAL_LIVE_REGION") or session.region_name
    if session.get_credentials() is None:
        pytest.exit(
            f"{MODE_VARIABLE}=1 but no AWS credentials were found (environment, ~/.aws, SSO, "
            "instance role): configure them (e.g. `aws configure` or AWS_PROFILE) and rerun. "
            "Nothing was created.",
            returncode=4,
        )
    if not region:
        pytest.exit(
            f"{MODE_VARIABLE}=1 but no AWS region is set: set AWS_REGION (Nova Multimodal "
            "Embeddings is in us-east-1) and rerun. Nothing was created.",
            returncode=4,
        )
    session = boto3.Session(region_name=region)
    try:
        identity = session.client("sts").get_caller_identity()
    except Exception as exc:
        pytest.exit(
            f"{MODE_VARIABLE}=1 but the AWS credentials do not work ({exc}). Nothing was created.",
            returncode=4,
        )
    return Preflight(region=region, account_id=str(identity["Account"]), session=session)


def _plan(module: ModuleType) -> Usage:
    plan = getattr(module, "LIVE_PLAN", None)
    if not isinstance(plan, Usage):
        raise pytest.UsageError(f"{module.__name__} declares no LIVE_PLAN (a Usage bound)")
    return plan


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: plan only what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    live_items = [i for i in items if i.get_closest_marker("integration") is not None]
    mode = live_mode()
    STATE.mode = mode
    if not live_items or mode is None:
        return
    modules: dict[str, ModuleType] = {}
    for item in live_items:
        module = getattr(item, "module", None)
        if module is not None:
            modules[module.__name__] = module
    budget = float(config.getoption("--live-budget-usd"))
    base = {n: _plan(m) for n, m in modules.items() if not getattr(m, "LIVE_GATED", False)}
    gated = sorted(
        ((n, _plan(m)) for n, m in modules.items() if getattr(m, "LIVE_GATED", False)),
        key=lambda pair: pair[1].bound(),
    )
    base["lifecycle"] = LIFECYCLE_PLAN
    total = Usage()
    for usage in base.values():
        total = total + usage
    included = dict(base)
    skipped: dict[str, str] = {}
    for name, usage in gated:
        if (total + usage).bound() <= budget:
            included[name] = usage
            total = total + usage
        else:
            need = (total + usage).bound()
            skipped[name] = (
                f"over the live budget: {name.rsplit('.', 1)[-1]} needs a bound of "
                f"${usage.bound():.4f} and the run would reach ${need:.4f} > "
                f"--live-budget-usd={budget:g}; rerun with --live-budget-usd={need + 0.005:.3f}"
            )
    for item in live_items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in skipped:
            item.add_marker(pytest.mark.skip(reason=skipped[module.__name__]))
    report = LiveReport(mode=mode, budget_usd=budget)
    report.plan = {
        "modules": {
            n: {"usage": u.to_json(), "bound_usd": round(u.bound(), 6)}
            for n, u in sorted(included.items())
        },
        "total_bound_usd": round(total.bound(), 6),
        "price_sources": PRICE_SOURCES,
    }
    report.skipped_for_budget = sorted(skipped)
    STATE.report = report
    parts = ", ".join(f"{n.rsplit('.', 1)[-1]} ${u.bound():.4f}" for n, u in included.items())
    STATE.plan_lines = [
        f"cost bound ${total.bound():.4f} (budget ${budget:g}; {parts})",
        *(f"skipped for budget: {reason}" for reason in skipped.values()),
    ]


def pytest_collection_finish(session: pytest.Session) -> None:
    if STATE.report is None or STATE.mode is None:
        return
    if not any(i.get_closest_marker("integration") for i in session.items):
        return
    if STATE.mode == "live":
        STATE.preflight = _preflight_live()
    else:
        STATE.preflight = Preflight(region="us-east-1", account_id=REHEARSAL_ACCOUNT)
    STATE.report.region = STATE.preflight.region
    STATE.report.account_id = STATE.preflight.account_id
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        what = "AWS account " + STATE.preflight.account_id
        if STATE.mode == "rehearsal":
            what = "the fakes (rehearsal: nothing reaches AWS)"
        reporter.write_line(f"live suite against {what}, region {STATE.preflight.region}:")
        reporter.write_line(
            f"  creates: S3 vector bucket {NAME_PREFIX}<run id> and S3 bucket "
            f"{NAME_PREFIX}<account>-<run id>, tagged {TAG_KEY}=<run id>, deleted at the end"
        )
        for line in STATE.plan_lines:
            reporter.write_line(f"  {line}")


# -- the resources: one run per session ----------------------------------------------------------


def _live_clients(preflight: Preflight, meter: UsageMeter) -> tuple[Any, Any, Any]:
    from crossmodal_search._aws import build_client

    session = preflight.session
    region = preflight.region
    return (
        meter.attach(build_client("s3vectors", session=session, region_name=region)),
        meter.attach(session.client("s3", region_name=region)),
        meter.attach(build_client("bedrock-runtime", session=session, region_name=region)),
    )


@pytest.fixture(autouse=True)
def _clean_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Overrides tests/conftest.py's: the live mode uses the real credential chain."""
    if live_mode() != "live":
        isolate_from_aws(monkeypatch, tmp_path_factory)
    yield


@pytest.fixture(scope="session", autouse=True)
def _live_gate() -> None:
    """One skip, one line, for every test of the suite when it is not enabled."""
    if live_mode() is None:
        pytest.skip(HOW_TO_RUN)


@pytest.fixture(scope="session")
def live(_live_gate: None, pytestconfig: pytest.Config) -> Iterator[LiveEnv]:
    """The run's resources, created once and deleted at the end, whatever happened."""
    preflight, report = STATE.preflight, STATE.report
    if preflight is None or report is None or STATE.mode is None:
        pytest.fail("the live suite's preflight did not run (collect with -m integration)")
    meter = STATE.meter
    fake_jobs = None
    with contextlib_exit_stack() as stack:
        if STATE.mode == "rehearsal":
            s3vectors, s3, bedrock, fake_jobs = _rehearsal_clients(stack, meter)
        else:
            s3vectors, s3, bedrock = _live_clients(preflight, meter)
        run = LiveRun(s3vectors, s3, account_id=preflight.account_id, region=preflight.region)
        report.run_id = run.run_id
        run.install_interrupt_handlers()
        env = LiveEnv(
            mode=STATE.mode,
            region=preflight.region,
            account_id=preflight.account_id,
            run=run,
            s3vectors=s3vectors,
            s3=s3,
            bedrock_runtime=bedrock,
            meter=meter,
            report=report,
            budget_usd=float(pytestconfig.getoption("--live-budget-usd")),
            fake_jobs=fake_jobs,
        )
        try:
            with meter.scope("lifecycle"):
                run.create()
            report.created = list(run.created)
            yield env
        finally:
            with meter.scope("lifecycle"):
                cleanup = run.cleanup()
            report.cleanup = {"deleted": cleanup.deleted, "errors": cleanup.errors}
            if cleanup.errors:
                pytest.fail(
                    "the live suite could not delete everything it created: "
                    f"{cleanup.errors}; run `make integration-sweep`"
                )


def contextlib_exit_stack() -> Any:
    import contextlib

    return contextlib.ExitStack()


def _rehearsal_clients(stack: Any, meter: UsageMeter) -> tuple[Any, Any, Any, Any]:
    import boto3
    from moto import mock_aws

    from crossmodal_search.testing import FakeBedrock, FakeBedrockJobs, FakeS3Vectors

    previous = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")

    def restore() -> None:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    stack.callback(restore)
    stack.enter_context(mock_aws())
    s3 = boto3.client("s3", region_name="us-east-1")
    jobs = FakeBedrockJobs(s3_client=s3, account_id=REHEARSAL_ACCOUNT)
    bedrock = FakeBedrock().attach(jobs.client("bedrock-runtime"))
    s3vectors = FakeS3Vectors(account_id=REHEARSAL_ACCOUNT).client()
    return meter.attach(s3vectors), meter.attach(s3), meter.attach(bedrock), jobs


# -- per test: usage scope and outcome; at the end: the report -------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    module = getattr(item, "module", None)
    if STATE.report is None or module is None or item.get_closest_marker("integration") is None:
        yield
        return
    with STATE.meter.scope(module.__name__):
        yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if STATE.report is None or "tests/integration/" not in report.nodeid.replace("\\", "/"):
        return
    if report.when == "call" or report.outcome != "passed":
        previous = STATE.report.outcomes.get(report.nodeid)
        if previous in ("failed", "error"):
            return
        outcome: str = report.outcome
        if report.when != "call" and report.outcome == "failed":
            outcome = "error"
        STATE.report.outcomes[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report = STATE.report
    if report is not None and (report.summary or report.behaviours):
        title = "live suite results"
        if report.mode == "rehearsal":
            title += " (rehearsal: the fakes answered, not AWS)"
        terminalreporter.write_sep("-", title)
        if report.behaviours:
            differ = [b["id"] for b in report.behaviours if not b["agrees"]]
            terminalreporter.write_line(
                f"pinned behaviours: {len(report.behaviours) - len(differ)} agree with our "
                f"assumptions, {len(differ)} differ{': ' + ', '.join(differ) if differ else ''}"
            )
        for line in report.summary:
            terminalreporter.write_line(line)
    if STATE.mode is None and any(
        "tests/integration/" in r.nodeid for r in terminalreporter.stats.get("skipped", [])
    ):
        terminalreporter.write_line(HOW_TO_RUN)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = STATE.report
    if report is None or STATE.preflight is None:
        return
    path = Path(str(session.config.getoption("--live-report")))
    if not path.is_absolute():
        path = Path(str(session.config.rootpath)) / path
    report.write(path, measured=dict(STATE.meter.usage))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        total = STATE.meter.total()
        reporter.write_line(
            f"live suite: measured usage prices at ${total.estimate():.4f} "
            f"(bound ${total.bound():.4f}); report written to {path}"
        )
