"""Test-wide isolation: no AWS credentials, no network, no user config."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not turn red on an unlucky draw);
# HYPOTHESIS_PROFILE=explore draws fresh ones, to look for new failures locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    # Options of the opt-in live AWS suite (tests/integration; docs/live-aws.md). Declared here:
    # pytest reads options only from the conftest at the root of the tests.
    group = parser.getgroup("live AWS suite")
    group.addoption(
        "--live-budget-usd",
        type=float,
        default=float(os.environ.get("CROSSMODAL_LIVE_BUDGET_USD", "0.03")),
        help="upper bound of the live suite's AWS cost; larger media tests that do not fit "
        "are skipped (default: $CROSSMODAL_LIVE_BUDGET_USD or 0.03)",
    )
    group.addoption(
        "--live-report",
        default=os.environ.get("CROSSMODAL_LIVE_REPORT", "integration-report.json"),
        help="where the live suite writes its report (default: %(default)s)",
    )


def isolate_from_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Unset every AWS credential source; point config files at nothing; no IMDS lookups."""
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path_factory.mktemp("aws") / "none"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # boto3's default session caches the credentials it first saw; a session made by an
    # earlier test (with its fake credentials) must not leak into the next one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(autouse=True)
def _clean_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Every test runs without AWS credentials, config files or instance metadata."""
    isolate_from_aws(monkeypatch, tmp_path_factory)
    yield


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for tests that sign requests answered by a fake (never sent)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
