"""The CLI's log output: ``-v`` for INFO, ``-vv`` for DEBUG, with AWS secrets redacted.

At DEBUG, botocore logs each request it signs: the canonical request (with the session token),
the signature, the headers sent (``Authorization`` names the access key id) and, for presigned
URLs, the query string (``X-Amz-Credential``, ``X-Amz-Security-Token``, ``X-Amz-Signature``).
Credential providers may log response bodies holding secret keys. :class:`SecretRedactingFilter`
replaces all of these in every record the CLI's log handler writes, whatever the verbosity.
"""

from __future__ import annotations

import logging
import os
import re

__all__ = ["REDACTED", "SecretRedactingFilter", "configure_logging"]

REDACTED = "<redacted>"

_KEY_ID = r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
_SECRET_NAMES = (
    r"SecretAccessKey|SecretKey|SessionToken|AccessKeyId|Token|aws_secret_access_key"
    r"|aws_session_token|aws_access_key_id|secret_key|security_token|session_token"
)
#: (pattern, replacement): the value after each name, whatever the quoting or separator.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # 'Authorization': b'AWS4-HMAC-SHA256 Credential=..., Signature=...' (a dict of headers)
    (re.compile(r"""(authorization['"]?\s*:\s*b?['"])[^'"]*""", re.I), rf"\g<1>{REDACTED}"),
    # Authorization: AWS4-HMAC-SHA256 ... (a raw header line)
    (re.compile(r"(authorization:\s*)[^\r\n'\"]+", re.I), rf"\g<1>{REDACTED}"),
    # x-amz-security-token:VALUE, 'X-Amz-Security-Token': b'VALUE', X-Amz-Security-Token=VALUE
    (
        re.compile(r"""(x-amz-security-token['"]?\s*[:=]\s*b?['"]?)[^'"&\s,;}]+""", re.I),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"((?:x-amz-)?credential=)[^&'\"\s,]+", re.I), rf"\g<1>{REDACTED}"),
    # Signature=HEX, X-Amz-Signature=HEX, "Signature:\nHEX" (botocore.auth)
    (re.compile(r"((?:x-amz-)?signature[=:]\s*)[0-9a-f]{16,}", re.I), rf"\g<1>{REDACTED}"),
    # "SecretAccessKey": "...", 'aws_session_token': '...', <SessionToken>...</SessionToken>
    (
        re.compile(rf"""(\b(?:{_SECRET_NAMES})['"]?\s*[:=]\s*b?['"]?)[^'"\s,;}}&]+""", re.I),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(rf"(<(?:{_SECRET_NAMES})>)[^<]+", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(rf"\b{_KEY_ID}\b"), REDACTED),
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with AWS credentials, tokens, signatures and ``secrets`` replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretRedactingFilter(logging.Filter):
    """Redacts AWS secrets from log records (message, arguments and traceback).

    Besides the patterns botocore's messages follow, the values of ``AWS_SECRET_ACCESS_KEY``
    and ``AWS_SESSION_TOKEN`` (read when the filter is made) are replaced wherever they show.
    Install it on handlers: a logger's own filters do not see records from its children.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets = tuple(
            value
            for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
            if len(value := os.environ.get(name, "")) >= 8
        )

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it when formatting
            return True
        cleaned = redact(message, self._secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info), self._secrets
            )
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        return True


def configure_logging(verbosity: int) -> None:
    """Log WARNING and up (``-v``: INFO, ``-vv``: DEBUG) to stderr, secrets redacted."""
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretRedactingFilter) for f in handler.filters):
            handler.addFilter(SecretRedactingFilter())
