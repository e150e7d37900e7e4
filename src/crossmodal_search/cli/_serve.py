"""``crossmodal serve``: the shopper's search page over the same store and embedder as the CLI."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import tempfile
import threading
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
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

_DEFAULT_PORT = 8000
#: ``crossmodal_search.web.DEFAULT_DECODE_MEMORY_BUDGET`` in MiB (the web extra may be missing).
DEFAULT_DECODE_MEMORY_MB = 256.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the search page and JSON API (needs the 'web' extra)",
        description=(
            "Serve a search page (photo upload, text, weights, filters) and its JSON API over "
            "an indexed store. --demo writes the sample catalog and indexes it first, so it "
            "runs with no AWS account."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_DEFAULT_PORT,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--image-root",
        type=Path,
        metavar="DIR",
        help="the only directory product images are served from (default with --demo: the "
        "sample catalog's images; otherwise none)",
    )
    parser.add_argument(
        "--s3-images",
        action="store_true",
        help="show product photos indexed as s3:// URIs: the page links them with presigned "
        "URLs signed by your AWS credentials (no request to AWS), and the browser loads them "
        "from S3",
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
        help="write the sample catalog and index it before serving, into a store of its own "
        "(in memory, or DIR/store with --demo-dir) unless --store names one",
    )
    parser.add_argument(
        "--demo-dir",
        type=Path,
        metavar="DIR",
        help="where --demo writes the sample catalog (default: a temporary directory)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=10.0,
        metavar="MB",
        help="largest query photo accepted, in MiB (default: %(default)s)",
    )
    parser.add_argument(
        "--decode-memory-mb",
        type=positive_float,
        default=DEFAULT_DECODE_MEMORY_MB,
        metavar="MB",
        help="memory the query photos being decoded at once may take, in MiB; uploads wait for "
        "their share, and a photo that alone needs more is refused (default: %(default)s)",
    )
    add_store_args(parser)
    add_embedder_args(parser)
    parser.set_defaults(func=run)


def build_app(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[FastAPI, str]:
    """The application ``serve`` runs, and a line saying what it serves.

    Resources that must outlive the app (the demo's temporary catalog) are registered on
    ``stack``.
    """
    # Raises ConfigurationError naming the extra when FastAPI is missing.
    from crossmodal_search.web import DEFAULT_MAX_PIXELS, create_app

    if args.max_upload_mb <= 0:
        raise ConfigurationError("--max-upload-mb must be positive")
    image_root: Path | None = args.image_root
    root: Path | None = None
    if args.demo:
        from crossmodal_search.datasets import write_sample_catalog

        directory = args.demo_dir
        if directory is None:
            directory = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="crossmodal-demo-"))
            )
        root = write_sample_catalog(directory)
        if args.store == os.environ.get("CROSSMODAL_STORE", DEFAULT_STORE):
            # Keep the demo products out of the user's default store.
            args.store = "memory:" if args.demo_dir is None else f"local:{root / 'store'}"
    # Serving only reads: no write lock, so `crossmodal index` can run beside a live page.
    searcher, description = open_searcher(args, must_exist=not args.demo, read_only=not args.demo)
    stack.enter_context(searcher)
    if root is not None:
        from crossmodal_search.datasets import load_abo

        catalog = load_abo(root, variants_from="model_name")
        report = searcher.index(catalog.products)
        if report.failed:
            logger.warning("demo: %d products failed to index", len(report.failed))
        if image_root is None:
            image_root = root / "images" / "small"
        description += (
            f"\ndemo catalog: {root} ({report.indexed} indexed, "
            f"{report.skipped_unchanged} unchanged)"
        )
    s3_images = None
    if args.s3_images:
        from botocore.config import Config

        from crossmodal_search._aws import build_client
        from crossmodal_search.web import S3ImageLinks

        # SigV4: the legacy query signature botocore may pick for S3 is refused by newer regions.
        client = build_client(
            "s3", region_name=args.region, config=Config(signature_version="s3v4")
        )
        s3_images = S3ImageLinks(client, expires_in=args.s3_image_minutes * 60)
    app = create_app(
        searcher,
        image_root=image_root,
        s3_images=s3_images,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=DEFAULT_MAX_PIXELS,
        decode_memory_budget=int(args.decode_memory_mb * 1024 * 1024),
    )
    if image_root is None:
        description += "\nimages: none served (pass --image-root DIR to show product photos)"
    else:
        description += f"\nimages: served from {image_root}"
    if s3_images is not None:
        description += (
            f"\nimages in S3: presigned links valid {args.s3_image_minutes} min "
            "(the browser needs network access to S3)"
        )
    return app, description


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigurationError(
            "crossmodal serve needs the optional 'web' extra: pip install 'crossmodal-search[web]'"
        ) from exc
    with contextlib.ExitStack() as stack:
        _exit_cleanly_on_sigterm(stack)
        # Listen first: a busy port fails here, before the demo is indexed or anything printed.
        sock = stack.enter_context(listen(args.host, args.port))
        app, description = build_app(args, stack)
        port = sock.getsockname()[1]
        print(description, flush=True)
        print(f"serving on http://{_url_host(args.host)}:{port}/ (Ctrl+C to stop)", flush=True)
        config = uvicorn.Config(app, log_level="info" if args.verbose else "warning")
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, as uvicorn would bind it.

    Raises:
        ConfigurationError: the port is in use, needs privileges, or the host is not local, with
            what to do about it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(_bind_failure(host, port, exc)) from exc
    except OverflowError as exc:  # a port outside 0..65535
        sock.close()
        raise ConfigurationError(f"--port {port} is not a port number (0-65535)") from exc
    sock.set_inheritable(True)
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use (another server, or another crossmodal serve): "
            f"stop it, or pass --port with a free port, e.g. --port {port + 1 if port else 8001}"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}: use a port from 1024 up, e.g. --port 8000"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on --host {host}: not an address of this machine "
            "(use 127.0.0.1, or 0.0.0.0 for every interface)"
        )
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _exit_cleanly_on_sigterm(stack: contextlib.ExitStack) -> None:
    """Turn SIGTERM into ``SystemExit`` so the demo's temporary catalog is removed.

    uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; with the default
    handler that kills the process before ``stack`` could clean up.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _terminate)
    stack.callback(signal.signal, signal.SIGTERM, previous)
