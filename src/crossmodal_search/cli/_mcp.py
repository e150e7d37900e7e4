"""``crossmodal mcp``: the MCP tool server over the same store and embedder as the CLI.

stdio by default (what desktop assistants launch); ``--transport streamable-http`` listens on
127.0.0.1 unless ``--host`` says otherwise. The store is opened read-only. Nothing but the
protocol goes to stdout: what the server serves is said on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal_search.cli._common import (
    DEFAULT_STORE,
    add_embedder_args,
    add_store_args,
    bounded_int,
    open_searcher,
    positive_float,
)
from crossmodal_search.cli._serve import _exit_cleanly_on_sigterm, listen
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crossmodal_search.search import CrossmodalSearcher
    from crossmodal_search.web import S3ImageLinks

_DEFAULT_PORT = 8000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mcp`` sub-command."""
    parser = subparsers.add_parser(
        "mcp",
        help="run the MCP tool server for agents and assistants (needs the 'mcp' extra)",
        description=(
            "Serve the catalog to MCP clients (desktop assistants, agents): tools to search by "
            "text and/or photo, find similar products, show a product, and list the metadata "
            "keys filters can use. Reads the store only. stdio by default."
        ),
    )
    parser.add_argument(
        "--transport",
        choices=("stdio", "streamable-http"),
        default="stdio",
        help="stdio (the client launches this command) or streamable-http (a local HTTP "
        "endpoint at /mcp) (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface streamable-http binds; anything but loopback exposes the tools, which "
        "have no authentication, to the network (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_DEFAULT_PORT,
        help="streamable-http port; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        metavar="DIR",
        help="the only directory image files are read from: query photos given as a path, and "
        "the product photos attached to answers (default with --demo: the sample catalog; "
        "otherwise none)",
    )
    parser.add_argument(
        "--s3-images",
        action="store_true",
        help="answer product photos indexed as s3:// URIs with presigned links, signed by your "
        "AWS credentials",
    )
    parser.add_argument(
        "--s3-image-minutes",
        type=bounded_int(1, 7 * 24 * 60),
        default=60,
        metavar="MIN",
        help="how long each presigned image link stays valid (default: %(default)s)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="write the sample catalog to a temporary directory and serve it from memory "
        "(indexed first; no AWS account needed)",
    )
    parser.add_argument(
        "--max-image-mb",
        type=positive_float,
        default=10.0,
        metavar="MB",
        help="largest query photo accepted, in MiB (default: %(default)s)",
    )
    parser.add_argument(
        "--decode-memory-mb",
        type=positive_float,
        default=256.0,
        metavar="MB",
        help="memory the photos being decoded at once may take, in MiB (default: %(default)s)",
    )
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run)


def build_server(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[MCPServer, str]:
    """The server ``mcp`` runs, and what it serves (for stderr)."""
    # Raises ConfigurationError naming the extra when the mcp SDK is missing.
    from crossmodal_search.integrations.mcp import create_server

    image_root: Path | None = args.image_root
    if args.demo:
        if args.store == os.environ.get("CROSSMODAL_STORE", DEFAULT_STORE):
            args.store = "memory:"  # keep the demo products out of the user's default store
        searcher, description, root = _demo(args, stack)
        image_root = image_root or root
    else:
        searcher, description = open_searcher(args, must_exist=True, read_only=True)
        stack.enter_context(searcher)
    server = create_server(
        searcher,
        image_root=image_root,
        s3_images=_s3_links(args) if args.s3_images else None,
        max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        decode_memory_budget=int(args.decode_memory_mb * 1024 * 1024),
    )
    if image_root is None:
        description += "\nimages: none read (pass --image-root DIR for photo paths and photos)"
    else:
        description += f"\nimages: read from {image_root} only"
    return server, description


def _demo(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> tuple[CrossmodalSearcher, str, Path]:
    from crossmodal_search.datasets import load_abo, write_sample_catalog

    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crossmodal-mcp-")))
    root = write_sample_catalog(directory)
    searcher, description = open_searcher(args)
    stack.enter_context(searcher)
    report = searcher.index(load_abo(root, variants_from="model_name").products)
    description += f"\ndemo catalog: {root} ({report.indexed} indexed)"
    return searcher, description, root


def _s3_links(args: argparse.Namespace) -> S3ImageLinks:
    from botocore.config import Config

    from crossmodal_search._aws import build_client
    from crossmodal_search.web import S3ImageLinks

    # SigV4: the legacy query signature botocore may pick for S3 is refused by newer regions.
    client = build_client("s3", region_name=args.region, config=Config(signature_version="s3v4"))
    return S3ImageLinks(client, expires_in=args.s3_image_minutes * 60)


def run(args: argparse.Namespace) -> int:
    """Serve until the client disconnects (stdio) or until interrupted."""
    with contextlib.ExitStack() as stack:
        _exit_cleanly_on_sigterm(stack)
        if args.transport == "stdio":
            server, description = build_server(args, stack)
            print(f"{description}\nMCP server on stdio", file=sys.stderr, flush=True)
            server.run("stdio")
            return 0
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - the mcp SDK depends on uvicorn
            raise ConfigurationError("streamable-http needs uvicorn: pip install uvicorn") from exc
        # Listen first: a busy port fails here, before anything is indexed or printed.
        sock = stack.enter_context(listen(args.host, args.port))
        server, description = build_server(args, stack)
        app = server.streamable_http_app(
            host=args.host,
            # A base64 photo takes 4 characters per 3 bytes, plus the rest of the request.
            max_request_body_size=int(args.max_image_mb * 1024 * 1024 * 4 / 3) + 64 * 1024,
        )
        host, port = args.host, sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        print(
            f"{description}\nMCP server on http://{url_host}:{port}/mcp (Ctrl+C to stop)",
            file=sys.stderr,
            flush=True,
        )
        config = uvicorn.Config(app, log_level="info" if args.verbose else "warning")
        uvicorn.Server(config).run(sockets=[sock])
    return 0
