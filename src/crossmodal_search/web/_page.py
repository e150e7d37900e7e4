"""The search page: one self-contained HTML document, rendered once per application."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources
from typing import get_args

from crossmodal_search.search import Fusion
from crossmodal_search.web._models import SearchRequest

#: Fusion methods the page offers (the API accepts the same, from ``SearchRequest``).
FUSIONS: tuple[str, ...] = get_args(Fusion)

_DEFAULT_TOP_K = SearchRequest.model_fields["top_k"].default


class Page:
    """The search page, rendered once, with a Content-Security-Policy pinning its inline code."""

    def __init__(self, html: str, image_sources: tuple[str, ...] = ()) -> None:
        self.html = html
        script = re.search(r"<script>(.*?)</script>", html, re.S)
        style = re.search(r"<style>(.*?)</style>", html, re.S)
        if script is None or style is None:  # pragma: no cover - the packaged page has both
            raise RuntimeError("index.html lacks its inline <script> or <style>")
        csp = "; ".join(
            [
                "default-src 'none'",
                f"script-src '{_sha256(script.group(1))}'",
                f"style-src '{_sha256(style.group(1))}'",
                " ".join(["img-src 'self' blob: data:", *image_sources]),
                "connect-src 'self'",
                "form-action 'self'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
            ]
        )
        self.headers = {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def render_page(
    *, max_upload_bytes: int, image_sources: tuple[str, ...] = (), hybrid: bool = False
) -> Page:
    """The packaged ``index.html`` with its configuration filled in (``hybrid``: the store has
    full-text fields, so the page offers to match exact words)."""
    template = resources.files("crossmodal_search.web").joinpath("index.html").read_text("utf-8")
    config = {
        "fusions": list(FUSIONS),
        "defaultFusion": FUSIONS[0],
        "defaultTopK": _DEFAULT_TOP_K,
        "maxUploadBytes": max_upload_bytes,
        "hybrid": hybrid,
    }
    # ``<`` escaped so no value can close the data block early.
    html = template.replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
    return Page(html, image_sources)
