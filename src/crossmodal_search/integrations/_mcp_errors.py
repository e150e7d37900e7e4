"""Every failure of a tool as an MCP tool error (``isError``), never a crash of the server.

The messages are the web API's: what to fix for bad input (the type first, as the API's
``error.type``), nothing of the server's inside for a service or internal failure (the details
go to the log under a reference).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from crossmodal_search.errors import (
    CrossmodalSearchError,
    InvalidInputError,
    ServiceError,
    StoreLockedError,
)
from crossmodal_search.web import HTTPProblem

__all__ = ["MAX_MESSAGE_CHARS", "tool_errors"]

logger = logging.getLogger("crossmodal_search.integrations.mcp")

#: Longest error message answered; longer ones (echoing a huge input) are cut.
MAX_MESSAGE_CHARS = 1000


def _error(type_: str, message: str) -> ToolError:
    text = f"{type_}: {message}"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return ToolError(text)


@contextmanager
def tool_errors(tool: str) -> Iterator[None]:
    """Turn what the body raises into a :class:`ToolError` the client sees as ``isError``."""
    try:
        yield
    except ToolError:
        raise
    except HTTPProblem as exc:  # the image checks: too large, not an image
        raise _error(exc.type, exc.message) from exc
    except InvalidInputError as exc:
        raise _error(type(exc).__name__, str(exc)) from exc
    except ServiceError as exc:
        # AWS's own message can name accounts, ARNs, models and quotas: it stays in the log.
        name = type(exc).__name__
        logger.warning(
            "%s in %s (AWS code %s, request id %s): %s",
            name,
            tool,
            exc.code or "-",
            exc.request_id or "-",
            exc,
        )
        request = f"AWS request id {exc.request_id}" if exc.request_id else "no AWS request id"
        raise _error(
            name, f"the embedding or vector service failed ({request}); see the server log"
        ) from exc
    except StoreLockedError as exc:
        logger.warning("%s in %s: %s", type(exc).__name__, tool, exc)
        raise _error(
            type(exc).__name__, "the store is being rewritten; try again in a moment"
        ) from exc
    except Exception as exc:
        reference = f"ref-{secrets.token_hex(4)}"
        logger.error("%s %s in %s: %s", type(exc).__name__, reference, tool, exc, exc_info=exc)
        name = type(exc).__name__ if isinstance(exc, CrossmodalSearchError) else "InternalError"
        raise _error(
            name, f"the server cannot answer; the details are in its log under {reference}"
        ) from exc
