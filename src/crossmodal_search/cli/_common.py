"""Options and helpers shared by every ``crossmodal`` sub-command.

Sub-commands (``index``, ``search``, ``demo``, ``serve``, ``eval``, ``tag``) all choose a store and
an embedder the same way::

    parser = sub.add_parser("mycommand")
    add_store_args(parser)
    add_embedder_args(parser)
    ...
    searcher, description = open_searcher(args)  # description says which embedder/store ran
    with searcher:
        ...

:func:`open_searcher` only reads ``args.store``, ``args.embedder``, ``args.dimension``,
``args.region`` and ``args.cache``; :func:`make_searcher` is the same without argparse.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from crossmodal_search._constants import NOVA_DIMENSIONS
from crossmodal_search._json import JSONInputError, loads_strict
from crossmodal_search.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3

    from crossmodal_search.search import CrossmodalSearcher, SearchResult
    from crossmodal_search.stores import StoreOptions, TextField

__all__ = [
    "DEFAULT_STORE",
    "ProgressBar",
    "add_embedder_args",
    "add_store_args",
    "as_float",
    "as_int",
    "bounded_int",
    "make_searcher",
    "no_results_hint",
    "open_searcher",
    "parse_filter",
    "positive_float",
    "positive_int",
    "render_results",
    "segment_label",
    "show_results",
    "text_field",
    "top_k",
    "weight",
]

#: Where ``crossmodal index`` and ``crossmodal search`` keep vectors unless ``--store`` says
#: otherwise (overridable with the ``CROSSMODAL_STORE`` environment variable).
DEFAULT_STORE = "local:.crossmodal/store"


def add_store_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--store SPEC`` and ``--region``."""
    parser.add_argument(
        "--store",
        default=os.environ.get("CROSSMODAL_STORE", DEFAULT_STORE),
        metavar="SPEC",
        help="local:DIR (embedded store in DIR), s3vectors://BUCKET/INDEX (Amazon S3 Vectors) "
        "or memory: (default: $CROSSMODAL_STORE or %(default)s)",
    )
    parser.add_argument(
        "--region", default=None, help="AWS region for Bedrock and S3 Vectors (default: boto3's)"
    )


def add_collapse_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--collapse product|variant``."""
    parser.add_argument(
        "--collapse",
        choices=("product", "variant"),
        default="product",
        help="one result per product (default), or per variant group: the group's best "
        "member, its other members found listed with it (top-k counts groups)",
    )


def add_embedder_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--embedder``, ``--dimension`` and ``--cache``."""
    parser.add_argument(
        "--embedder",
        choices=("auto", "nova", "offline"),
        default="auto",
        help="nova: Amazon Nova Multimodal Embeddings on Bedrock; offline: deterministic "
        "colour/lexical features, no network; auto (default): nova when AWS credentials "
        "are found, offline otherwise",
    )
    parser.add_argument(
        "--dimension",
        type=int,
        choices=NOVA_DIMENSIONS,
        default=1024,
        help="vector dimension (default: %(default)s); must match an existing index",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="PATH",
        help="SQLite cache of Nova embeddings, so re-indexing never pays twice (Nova only)",
    )


def make_searcher(
    *,
    store: str = DEFAULT_STORE,
    embedder: str = "auto",
    dimension: int = 1024,
    region: str | None = None,
    cache: str | None = None,
    must_exist: bool = False,
    read_only: bool = False,
    max_concurrency: int = 32,
    session: boto3.Session | None = None,
    non_filterable: Sequence[str] = (),
    text_fields: Sequence[TextField] | None = None,
    max_images: int = 8,
    main_image_only: bool = False,
) -> tuple[CrossmodalSearcher, str]:
    """Build a searcher from CLI-style options.

    Args:
        store: A store spec (see :func:`crossmodal_search.stores.open_store`).
        embedder: ``auto``, ``nova`` or ``offline``.
        dimension: Vector dimension of embedder and store.
        region: AWS region for Bedrock and S3 Vectors.
        cache: Path of a Nova embedding cache.
        must_exist: Fail when the local store directory or the S3 Vectors index does not exist
            yet (searching an index that was never built) instead of creating it.
        read_only: Only read: a local store is opened without its write lock (searching while
            another process indexes), and a missing local directory or S3 Vectors index is an
            error instead of being created.
        max_concurrency: Embedding calls in flight while indexing.
        session: A ``boto3.Session`` for Bedrock and S3 Vectors (default: boto3's).
        non_filterable: Metadata keys to declare non-filterable, besides the defaults, when
            the store is created (an existing store must have been created with them).
        text_fields: The full-text fields indexing makes searchable (None: the searcher's
            defaults).
        max_images: Photos a product may have (``max_images_per_product``).
        main_image_only: Index each product's main photo only.

    Returns:
        The searcher and a one-line description of which embedder and store run.

    Raises:
        ConfigurationError: Bad spec, Nova requested without credentials, missing store.
    """
    from crossmodal_search.embeddings import make_embedder
    from crossmodal_search.search import CrossmodalSearcher
    from crossmodal_search.stores import open_store, parse_store_spec

    kind, location, _ = parse_store_spec(store)
    missing = kind == "local" and location is not None and not Path(location).is_dir()
    if (must_exist or read_only) and missing:
        raise ConfigurationError(
            f"no index at {location}: run `crossmodal index` first, or pass --store"
        )
    emb, why = make_embedder(
        embedder,  # type: ignore[arg-type]
        dimension=dimension,
        region_name=region,
        session=session,
        cache=cache,
    )
    store_kwargs = store_options(
        kind, region=region, session=session, must_exist=must_exist, read_only=read_only
    )
    if non_filterable:
        from crossmodal_search.stores import DEFAULT_NON_FILTERABLE_KEYS

        keys = dict.fromkeys([*DEFAULT_NON_FILTERABLE_KEYS, *non_filterable])
        store_kwargs["non_filterable_metadata_keys"] = tuple(keys)
    vector_store = open_store(store, dimension=dimension, **store_kwargs)
    searcher = CrossmodalSearcher(
        emb,
        vector_store,
        max_concurrency=max_concurrency,
        text_fields=text_fields,
        max_images_per_product=max_images,
        main_image_only=main_image_only,
    )
    return searcher, f"embedder: {why}\nstore: {store} ({dimension} dimensions)"


def store_options(
    kind: str,
    *,
    region: str | None,
    session: boto3.Session | None = None,
    must_exist: bool = False,
    read_only: bool = False,
) -> StoreOptions:
    """``open_store`` options for a store of ``kind`` (from ``parse_store_spec``).

    ``must_exist`` or ``read_only``: an S3 Vectors index is not created; ``read_only``: a local
    store is opened without its write lock.
    """
    options: StoreOptions = {}
    if kind == "s3vectors":
        if region is not None:
            options["region_name"] = region
        if session is not None:
            options["session"] = session
        if must_exist or read_only:
            options["create"] = False
    if kind == "local" and read_only:
        options["read_only"] = True
    return options


def open_searcher(
    args: argparse.Namespace, *, must_exist: bool = False, read_only: bool = False
) -> tuple[CrossmodalSearcher, str]:
    """:func:`make_searcher` from parsed ``add_store_args``/``add_embedder_args`` options.

    Reads ``store``, ``embedder``, ``dimension`` and, when present, ``region``, ``cache`` and
    ``concurrency``. The caller closes the searcher (``with searcher: ...``).
    """
    return make_searcher(
        store=args.store,
        embedder=args.embedder,
        dimension=args.dimension,
        region=getattr(args, "region", None),
        cache=getattr(args, "cache", None),
        must_exist=must_exist,
        read_only=read_only,
        max_concurrency=getattr(args, "concurrency", 32),
        max_images=getattr(args, "max_images", 8),
        main_image_only=getattr(args, "main_image_only", False),
    )


# ----------------------------------------------------------------------- argparse types


def _echo(value: str, limit: int = 60) -> str:
    """``value`` quoted for an error message, cut short: errors never echo huge input."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} chars)"


def as_int(value: str) -> int:
    """``int(value)``, or the argparse error ``not an integer``."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {_echo(value)}") from None


def as_float(value: str) -> float:
    """``float(value)``, or the argparse error ``not a number``."""
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {_echo(value)}") from None


def text_field(value: str) -> TextField:
    """argparse type: ``KEY`` or ``KEY:LANGUAGE`` (``brand``, ``text:en``)."""
    from crossmodal_search.stores import LANGUAGES, TextField

    key, _, language = value.partition(":")
    if not key or len(key) > 63:
        raise argparse.ArgumentTypeError(f"expected KEY or KEY:LANGUAGE, got {_echo(value)}")
    if language and language not in LANGUAGES:
        raise argparse.ArgumentTypeError(
            f"unknown language {_echo(language)}: one of {', '.join(LANGUAGES)}"
        )
    return TextField(key, language or None)


def positive_int(value: str) -> int:
    """argparse type: an int >= 1."""
    n = as_int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def top_k(value: str) -> int:
    """argparse type: an int in 1..100 (the S3 Vectors query limit)."""
    n = positive_int(value)
    if n > 100:
        raise argparse.ArgumentTypeError(f"must be in 1..100, got {n}")
    return n


def weight(value: str) -> float:
    """argparse type: a float in [0, 1]."""
    w = as_float(value)
    if not 0.0 <= w <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {_echo(value)}")
    return w


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an int in ``low..high``."""

    def parse(value: str) -> int:
        number = as_int(value)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {number}")
        return number

    return parse


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    number = as_float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def parse_filter(value: str) -> dict[str, object]:
    """argparse type: a JSON object in the S3 Vectors filter language."""
    try:
        parsed = loads_strict(value, max_bytes=64 * 1024)
    except JSONInputError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: {_echo(value)}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f'must be a JSON object such as \'{{"color": "red"}}\', got {_echo(value)}'
        )
    return parsed


# ----------------------------------------------------------------------- output


def no_results_hint(
    searcher: CrossmodalSearcher, results: Sequence[SearchResult], args: argparse.Namespace
) -> str | None:
    """Why ``results`` is empty (the searcher's explanation for ``--mode`` and ``--filter``),
    or ``None`` when something was found."""
    if results:
        return None
    return searcher.explain_no_results(search_mode=args.mode, filter=args.filter)


def show_results(
    results: Sequence[SearchResult],
    *,
    description: str,
    store: str,
    query: dict[str, object],
    as_json: bool,
    hint: str | None,
) -> int:
    """Print ``results`` as the table (after the embedder and store lines) or, with ``as_json``,
    as one JSON document echoing ``query``; ``hint`` (why nothing was found) goes to stderr."""
    import json

    if hint is not None:
        print(f"crossmodal: no results: {hint}", file=sys.stderr)
    if as_json:
        payload = {
            "embedder": description.splitlines()[0].removeprefix("embedder: "),
            "store": store,
            "query": query,
            "results": [r.model_dump(mode="json") for r in results],
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return 0
    print(description)
    print(render_results(results))
    return 0


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _describe(metadata: dict[str, object]) -> str:
    parts: list[str] = []
    for key in ("brand", "color", "product_type"):
        value = metadata.get(key)
        if isinstance(value, list):
            value = "/".join(str(v) for v in value)
        if value not in (None, ""):
            parts.append(str(value))
    return ", ".join(parts)


def segment_label(result: SearchResult) -> str:
    """Where a segment hit sits: ``1:05-1:10`` (media), ``p. 3`` (PDF), ``chars 0-1000``."""
    return result.segment_label()


def render_results(results: Sequence[SearchResult], *, width: int | None = None) -> str:
    """A readable table: rank, product, similarity, matched vector (and where in the media, for
    a segment hit; and the query's words a hybrid search found), title, brand/colour/type; under
    a collapsed family's row, its other members found."""
    if not results:
        return "  (no results)"
    width = width or shutil.get_terminal_size((110, 24)).columns
    id_w = max(7, *(len(r.product_id) for r in results))
    matched = [_matched(r) for r in results]
    matched_w = max(8, *(len(m) for m in matched))
    fixed = 4 + id_w + 2 + 6 + 2 + matched_w + 2
    details = [_describe(dict(r.metadata)) for r in results]
    detail_w = min(34, max((len(d) for d in details), default=0))
    title_w = max(20, width - fixed - detail_w - 2)
    lines = [
        f"{'#':>2}  {'product':<{id_w}}  {'sim':>6}  {'matched':<{matched_w}}  "
        f"{'title':<{title_w}}  {'brand, colour, type' if detail_w else ''}".rstrip()
    ]
    for rank, (r, what, detail) in enumerate(zip(results, matched, details, strict=True), 1):
        lines.append(
            f"{rank:>2}  {r.product_id:<{id_w}}  {r.similarity:>6.3f}  {what:<{matched_w}}  "
            f"{_clip(r.title, title_w):<{title_w}}  {_clip(detail, detail_w)}".rstrip()
        )
        if r.variants:  # collapse="variant": the family's other members found, with their sim
            found = ", ".join(f"{v.product_id} {v.similarity:.3f}" for v in r.variants)
            label = f"+{len(r.variants)} variant{'s' if len(r.variants) > 1 else ''}: "
            lines.append("    " + _clip(label + found, width - 4))
    return "\n".join(lines)


def _matched(result: SearchResult) -> str:
    """``combined``, ``video 1:05-1:10``, ``combined + "red dress"`` (vector and words), or
    ``words "RS-2424Y"`` (words only)."""
    what = result.matched_type + (f" {segment_label(result)}" if result.segment_unit else "")
    words = _clip(" ".join(result.matched_words), 20)
    if result.matched_by == "both":
        return f'{what} + "{words}"'
    if result.matched_by == "words":
        return f'words "{words}"'
    return what


class ProgressBar:
    """A one-line progress bar with rate and ETA on a terminal; silent when the stream is not a
    TTY. ``done`` and ``total`` keep the last counts reported (for an interruption message)."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._shown = False
        self._clock = clock
        self._started: float | None = None
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        """Redraw for ``done`` of ``total``."""
        now = self._clock()
        if self._started is None:
            self._started = now
        self.done, self.total = done, total
        if not self._enabled or total <= 0:
            return
        cells = 30
        filled = cells * min(done, total) // total
        bar = "#" * filled + "." * (cells - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total}{self._pace(now)}")
        self._stream.flush()
        self._shown = True

    def _pace(self, now: float) -> str:
        """`` 12.5/s ETA 1:05`` once a rate can be measured, else ``""``."""
        assert self._started is not None
        elapsed = now - self._started
        if self.done <= 0 or elapsed < 0.5:
            return ""
        rate = self.done / elapsed
        left = max(self.total - self.done, 0) / rate
        minutes, seconds = divmod(int(left + 0.5), 60)
        hours, minutes = divmod(minutes, 60)
        eta = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        return f" {rate:.1f}/s ETA {eta}   "

    def close(self) -> None:
        """End the line so that later output starts on a fresh one."""
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False
