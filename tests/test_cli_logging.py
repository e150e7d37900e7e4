"""``crossmodal -vv`` logs botocore's requests without the credentials that signed them."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossmodal_search.cli._logging import REDACTED, SecretRedactingFilter, redact
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.search import CrossmodalSearcher, Product
from crossmodal_search.stores import LocalVectorStore
from crossmodal_search.testing import FakeBedrock

pytest.importorskip("fastapi", reason="needs the 'web' extra")


KEY_ID = "ASIAQX7EXAMPLEKEY4ID"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLESECRET"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/=abcdefghijklmnop0123456789"

# Runs the real CLI in a fresh process. Its credentials come from the environment (above); every
# botocore session it makes gets a before-send handler (botocore's BUILTIN_HANDLERS, as moto
# does) that FakeBedrock answers at the HTTP boundary. Then, with the CLI's logging still in
# place, it signs a presigned image link the way `crossmodal serve --s3-images` does.
DRIVER = """
import sys
import botocore.handlers
from botocore.config import Config
from crossmodal_search._aws import build_client
from crossmodal_search.cli import main
from crossmodal_search.testing import FakeBedrock
from crossmodal_search.web import S3ImageLinks

attached = FakeBedrock().client()

def forward(request, event_name, **kwargs):
    _, response = attached.meta.events.emit_until_response(event_name, request=request)
    return response

botocore.handlers.BUILTIN_HANDLERS.append(("before-send.bedrock-runtime.InvokeModel", forward))
code = main(sys.argv[1:])
s3 = build_client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
print("LINK", S3ImageLinks(s3).url_for("s3://shop-images/red.jpg"))
sys.exit(code)
"""


@pytest.fixture
def nova_store(tmp_path: Path) -> Path:
    directory = tmp_path / "store"
    nova = NovaEmbeddings(client=FakeBedrock().client(), dimension=256)
    with LocalVectorStore(directory, dimension=256) as store:
        CrossmodalSearcher(nova, store).index(
            [Product("P-RED", "Red summer dress"), Product("P-BLUE", "Blue denim jacket")]
        )
    return directory


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_debug_log_of_a_signed_call_and_a_presigned_link_holds_no_secret(
    nova_store: Path, tmp_path: Path, verbosity: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = [verbosity, "search", "red dress", "--store", f"local:{nova_store}"]
    command += ["--embedder", "nova", "--dimension", "256", "--region", "us-east-1"]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "P-RED" in done.stdout
    link = re.search(r"LINK (\S+)", done.stdout)
    assert link is not None and "X-Amz-Signature=" in link.group(1)
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", link.group(1))
    assert signature is not None
    log = done.stderr
    if verbosity == "-vv":
        # The request was logged, signed headers, canonical request and presigning included.
        assert "Sending http request" in log and "CanonicalRequest" in log
        assert "X-Amz-Credential=" in log and REDACTED in log
    for secret in (KEY_ID, SECRET, TOKEN, signature.group(1), "Credential=ASIA"):
        assert secret not in log
    # Neither the InvokeModel signature nor any other 64-hex signature is left.
    assert not re.search(r"signature[=:]\s*[0-9a-f]{16,}", log, re.I)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("<SecretAccessKey>abc/DEF+ghi123456</SecretAccessKey>", "abc/DEF+ghi123456"),
        ("<SessionToken>FQoGZXIvYXdzEXAMPLE</SessionToken>", "FQoGZXIvYXdzEXAMPLE"),
        ('{"AccessKeyId": "ASIAQX7EXAMPLEKEY4ID", "Token": "tok-en/123=="}', "tok-en/123=="),
        ('{"SecretAccessKey": "s3cr3t/value+x"}', "s3cr3t/value+x"),
        ("aws_session_token = FwoGZXIvYXdzEXAMPLE", "FwoGZXIvYXdzEXAMPLE"),
        ("'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA...'", "AWS4-HMAC-SHA256"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("x-amz-security-token:IQoJb3JpZ2luX2Vj", "IQoJb3JpZ2luX2Vj"),
        ("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=IQo%2Fb3J&X-Amz-Date=1", "IQo%2Fb3J"),
        ("plain AKIAIOSFODNN7EXAMPLE in a message", "AKIAIOSFODNN7EXAMPLE"),
    ],
)
def test_redact_covers_credential_provider_bodies_and_headers(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned and REDACTED in cleaned


def test_redact_keeps_what_is_not_secret() -> None:
    text = "NextToken=abc; X-Amz-Date=20250101T000000Z; Found credentials in environment variables."
    assert redact(text) == text


def test_filter_redacts_arguments_and_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    record = logging.LogRecord("botocore", logging.DEBUG, __file__, 1, "key %s", (SECRET,), None)
    try:
        raise RuntimeError(f"failed with {TOKEN} and key {SECRET}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert SecretRedactingFilter().filter(record)
    assert SECRET not in record.getMessage()
    assert record.exc_text is not None and SECRET not in record.exc_text
    assert "RuntimeError" in record.exc_text
