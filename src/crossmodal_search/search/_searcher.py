"""``CrossmodalSearcher``: the facade that indexes a catalog and searches it.

It composes an embedder and a store with the parts that do the work, each in its own module:
``_schema`` (keys and metadata), ``_planner`` (what each product needs), ``_ingest`` (the
embedding run and its failure policy), ``_media_ingest`` (video, audio and document segments),
``_query`` (search, fusion and grouping by product) and ``_results`` (what comes back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING

from crossmodal_search._types import Filter
from crossmodal_search.embeddings import (
    Embedder,
    ImageInput,
    VideoEmbeddingMode,
)
from crossmodal_search.errors import (
    ConfigurationError,
)
from crossmodal_search.search._catalog import MAX_EXTRA_IMAGES, Product
from crossmodal_search.search._hybrid import (
    DEFAULT_LEXICAL_WEIGHT,
    active_text_fields,
    check_text_fields,
    ensure_text_fields,
)
from crossmodal_search.search._ingest import (
    EmbedFn,
    IngestPolicy,
    IngestRun,
    ProgressCallback,
    embed_with,
    int_setting,
)
from crossmodal_search.search._media_ingest import (
    MediaIngestReport,
    check_jobs,
    index_media,
    media_items,
)
from crossmodal_search.search._planner import (
    Planner,
    ProductPlan,
    check_products,
    estimate,
    product_windows,
)
from crossmodal_search.search._products import (
    delete_products,
    group_of,
    own_vector,
    product_view,
    prune_products,
)
from crossmodal_search.search._query import Fusion, ProductSearch, SearchMode, is_weight
from crossmodal_search.search._results import (
    CostEstimate,
    IngestReport,
    ItemFailure,
    ProductView,
    SearchResult,
)
from crossmodal_search.search._variants import Collapse
from crossmodal_search.stores import StoreLimits, TextField, VectorStore

if TYPE_CHECKING:
    from crossmodal_search.embeddings import SegmentedEmbeddingJobs

__all__ = ["CrossmodalSearcher"]

logger = logging.getLogger(__name__)


class CrossmodalSearcher:
    """Index products and search them by text, image or both.

    Composes any :class:`~crossmodal_search.embeddings.Embedder` with any
    :class:`~crossmodal_search.stores.VectorStore`. The searcher never prints; it logs to
    ``crossmodal_search.search``.

    Args:
        embedder: Produces the vectors; its ``dimension`` must equal the store's.
        store: Where vectors live.
        max_concurrency: Embedding calls in flight at once while indexing (default 32). An
            embedder may hold fewer: :class:`~crossmodal_search.embeddings.NovaEmbeddings`
            lowers its own limit when Bedrock throttles, so the default is safe under quotas.
        combined_text_weight: Weight of the text vector in the stored ``combined`` vector
            (the image gets ``1 - weight``). Part of the content hash: changing it re-embeds.
        batch_size: Records per ``store.put`` call (S3 Vectors accepts at most 500).
        ingest_policy: What :meth:`index` does when products fail: retry later in the run,
            pause through a throttling storm, stop when every product meets the same error
            (:class:`IngestPolicy`; the defaults suit Bedrock).
        text_fields: Metadata keys :meth:`index` makes full-text searchable on the store, for
            hybrid search: keys, or :class:`~crossmodal_search.stores.TextField` values with an
            analyzer language. None (default): ``title``, ``text`` (the description),
            ``brand`` and ``model_number``; ``()``: none. A store that cannot (a CLASSIC S3
            Vectors index, a store without full-text search) is indexed as before, with a
            warning.
        max_images_per_product: Photos a product may have (``image`` plus ``images``, default
            8); :meth:`index` and :meth:`estimate` refuse a product with more before any call.
            Each extra photo costs one embedding call and one stored vector.
        main_image_only: Index only each product's main photo (``image``): ``images`` are
            ignored, and extra photos stored by an earlier run are deleted.

    Raises:
        ConfigurationError: The embedder and store dimensions differ, or an argument is out of
            range.

    Example:
        >>> searcher = CrossmodalSearcher(OfflineEmbedder(), LocalVectorStore(dimension=1024))
        >>> report = searcher.index(products)  # doctest: +SKIP
        >>> searcher.search("red summer dress", top_k=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        *,
        max_concurrency: int = 32,
        combined_text_weight: float = 0.5,
        batch_size: int = 500,
        ingest_policy: IngestPolicy | None = None,
        text_fields: Iterable[str | TextField] | None = None,
        max_images_per_product: int = 8,
        main_image_only: bool = False,
    ) -> None:
        if embedder.dimension != store.dimension:
            raise ConfigurationError(
                f"the embedder produces {embedder.dimension}-dimensional vectors but the store "
                f"holds {store.dimension}-dimensional ones; use the same dimension for both"
            )
        int_setting("max_concurrency", max_concurrency, 1)
        int_setting("batch_size", batch_size, 1)
        int_setting("max_images_per_product", max_images_per_product, 1, 1 + MAX_EXTRA_IMAGES)
        if not is_weight(combined_text_weight):
            raise ConfigurationError(
                f"combined_text_weight must be a number in [0, 1], got {combined_text_weight!r}"
            )
        self._max_images = max_images_per_product
        self._main_only = bool(main_image_only)
        self._embedder = embedder
        self._store = store
        self._max_concurrency = max_concurrency
        self._weight = float(combined_text_weight)
        self._batch_size = batch_size
        self._policy = ingest_policy or IngestPolicy()
        self._text_fields = check_text_fields(text_fields)
        self._limits: StoreLimits = store.limits
        self._planner = Planner(
            store,
            limits=self._limits,
            model_id=embedder.model_id,
            weight=self._weight,
            main_image_only=self._main_only,
        )
        self._search = ProductSearch(embedder, store)

    def __repr__(self) -> str:
        return (
            f"CrossmodalSearcher(embedder={self._embedder!r}, store={self._store!r}, "
            f"combined_text_weight={self._weight})"
        )

    def close(self) -> None:
        """Close the store, and the embedder when it holds resources (a cache, clients)."""
        self._store.close()
        close = getattr(self._embedder, "close", None)  # the Embedder protocol has no close
        if callable(close):
            close()

    def __enter__(self) -> CrossmodalSearcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        """The embedder used for indexing and queries."""
        return self._embedder

    @property
    def store(self) -> VectorStore:
        """The vector store searched."""
        return self._store

    @property
    def text_fields(self) -> tuple[TextField, ...]:
        """The store's full-text fields that answer queries now (``ACTIVE``): hybrid search
        is available when there is one (and, on S3 Vectors, the index is ENHANCED)."""
        return tuple(active_text_fields(self._store))

    @property
    def combined_text_weight(self) -> float:
        """Weight of the text vector in each stored ``combined`` vector."""
        return self._weight

    @property
    def max_images_per_product(self) -> int:
        """Photos a product may have (main photo included)."""
        return self._max_images

    @property
    def main_image_only(self) -> bool:
        """Whether only each product's main photo is indexed."""
        return self._main_only

    @property
    def batch_size(self) -> int:
        """Records per ``store.put`` call."""
        return self._batch_size

    @property
    def max_concurrency(self) -> int:
        """Embedding calls in flight at once while indexing."""
        return self._max_concurrency

    # ------------------------------------------------------------------ indexing

    def estimate(self, products: Iterable[Product], *, check_store: bool = True) -> CostEstimate:
        """How many embedding calls, vectors and bytes :meth:`index` would need, without calling.

        Local images (every photo) are read and hashed; the embedder is never called. With
        ``check_store`` (the default) the store is read to find products already indexed
        unchanged, exactly as ``index`` would.

        Example:
            >>> searcher.estimate(products).embed_calls  # doctest: +SKIP
            72
        """
        items = self._check_products(products)
        plans: list[ProductPlan] = []
        with ThreadPoolExecutor(self._max_concurrency) as pool:
            for window in self._windows(items):
                if check_store:
                    plans += self._planner.plan(window, pool)
                else:
                    plans += pool.map(self._planner.prepare, window)
        dimension, size = self._store.dimension, self._batch_size
        return estimate(plans, dimension=dimension, batch_size=size, products=len(items))

    def index(
        self,
        products: Iterable[Product],
        *,
        progress: ProgressCallback | None = None,
        dry_run: bool = False,
        prune: bool = False,
    ) -> IngestReport:
        """Embed and store products; safe to rerun and to resume after an interruption.

        Products already stored with identical content are skipped without embedding calls;
        changed ones are re-embedded and overwritten; vectors are written in ``batch_size``
        batches as soon as a batch is full. A product whose image is unreadable, or that the
        embedding service rejects, is reported in ``IngestReport.failed`` and the others still
        land. Errors that concern every product (missing permissions, a missing index, a store
        write failure) propagate; what was written before stays, and a rerun continues.

        Args:
            products: The catalog (product ids must be unique).
            progress: Called as ``progress(done, total)`` after each product (on the calling
                thread).
            dry_run: Compute :meth:`estimate` and return it in the report; embed and write
                nothing.
            prune: ``products`` is the complete catalog: after indexing, delete every product
                of the store that is not in it (see :meth:`prune`). Never prune with a partial
                catalog (a ``limit``, one page of products): the rest would be deleted.

        Raises:
            InvalidInputError: ``products`` holds something other than a Product, or a product
                id twice (nothing is embedded or written).
        """
        started = time.perf_counter()
        items = self._check_products(products)
        if dry_run:
            pruned = self.prune([p.product_id for p in items], dry_run=True) if prune else None
            return IngestReport(
                dry_run=True,
                estimate=self.estimate(items),
                seconds=time.perf_counter() - started,
                pruned=pruned.pruned if pruned else 0,
            )
        report = self._index_with(items, embed_with(self._embedder), progress, started)
        if prune:
            removed = self.prune([p.product_id for p in items])
            report = report.model_copy(
                update={
                    "pruned": removed.pruned,
                    "vectors_deleted": report.vectors_deleted + removed.vectors_deleted,
                    "seconds": time.perf_counter() - started,
                }
            )
        logger.info(
            "indexed %d products (%d unchanged, %d failed), %d vectors written, %d embed calls",
            report.indexed,
            report.skipped_unchanged,
            len(report.failed),
            report.vectors_written,
            report.embed_calls,
        )
        return report

    # ------------------------------------------------------------------ long media

    def index_media(
        self,
        products: Iterable[Product],
        *,
        jobs: SegmentedEmbeddingJobs | None = None,
        output_s3_uri: str | None = None,
        segment_seconds: int = 5,
        max_length_chars: int = 32_000,
        embedding_mode: VideoEmbeddingMode = "AUDIO_VIDEO_COMBINED",
        dpi: int = 150,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Index products' ``video``, ``audio`` and ``document`` per segment; safe to rerun.

        Video and audio (``s3://``) and text documents in S3 (or local ones over 8,192
        characters, uploaded to ``output_s3_uri``) are segmented by Nova's asynchronous jobs
        (``jobs``: all started first, then awaited); local PDFs are embedded page by page with
        this searcher's embedder. Each segment carries the product's ``text``, ``image_path``
        and metadata plus where it sits in the media (docs/search.md, "Long media"). A source
        already stored with the same settings, model and metadata is skipped; stale segments
        are deleted; failed jobs and segments are reported per product (``kind`` = the media
        kind) and the good segments of a partly failed source are still written.

        Args:
            products: The catalog (product ids must be unique; products without media are
                ignored: text and image are indexed by :meth:`index`).
            jobs: Nova asynchronous jobs (same model and dimension as the searcher).
            output_s3_uri: Where Nova writes segment results (``s3://bucket/prefix/``).
            segment_seconds: Seconds per audio/video segment, 1-30.
            max_length_chars: Characters per text-document segment, 800-50,000.
            embedding_mode: ``AUDIO_VIDEO_COMBINED`` or ``AUDIO_VIDEO_SEPARATE``.
            dpi: Rendering resolution of PDF pages.
            timeout: Seconds to wait for each job; a job still running is reported as failed
                and keeps running in AWS (a rerun resumes it).
            progress: ``progress(done, total)`` per media source finished.

        Returns:
            ``indexed``/``skipped_unchanged`` count media sources, ``jobs`` the jobs started,
            ``embed_calls`` jobs plus PDF pages embedded.

        Raises:
            InvalidInputError: Bad settings, a product twice, or S3 media without ``jobs`` and
                ``output_s3_uri`` (before any call).
            ConfigurationError: ``jobs`` embeds with another model or dimension; a PDF without
                the ``pdf`` extra (pypdfium2).
        """
        started = time.perf_counter()
        items = self._check_products(products)
        if jobs is not None:
            check_jobs(jobs, model_id=self._embedder.model_id, dimension=self._store.dimension)
        media, failed = media_items(
            items, store=self._store, limits=self._limits, model_id=self._embedder.model_id
        )
        outcome: MediaIngestReport = index_media(
            self._store,
            media,
            jobs=jobs,
            embedder=self._embedder,
            output_s3_uri=output_s3_uri,
            segment_seconds=segment_seconds,
            max_length_chars=max_length_chars,
            embedding_mode=embedding_mode,
            dpi=dpi,
            timeout=timeout,
            progress=progress,
        )
        failed.extend(
            ItemFailure(product_id=f.product_id, kind=f.kind, reason=f"{f.source}: {f.reason}")
            for f in outcome.failed
        )
        report = IngestReport(
            indexed=outcome.indexed,
            skipped_unchanged=outcome.skipped_unchanged,
            failed=failed,
            vectors_written=outcome.vectors_written,
            vectors_deleted=outcome.vectors_deleted,
            embed_calls=outcome.embed_calls,
            seconds=time.perf_counter() - started,
            jobs=outcome.jobs,
        )
        logger.info(
            "indexed %d media sources (%d unchanged, %d failures), %d segment vectors written",
            report.indexed,
            report.skipped_unchanged,
            len(report.failed),
            report.vectors_written,
        )
        return report

    # ------------------------------------------------------------------ products

    def delete(self, product_ids: Iterable[str]) -> None:
        """Delete every stored vector of these products, extra photos and segments included
        (unknown ids are ignored)."""
        delete_products(self._store, product_ids, self._batch_size)

    def prune(self, keep: Iterable[str], *, dry_run: bool = False) -> IngestReport:
        """Delete every product of the store whose id is not in ``keep`` (the full catalog).

        All the vectors of a removed product go: text, image, combined, its extra photos and
        every segment of its video, audio and document. Keys the searcher did not write (not
        ``text-``, ``image-``, ``image{n}-``, ``combined-``, or a segment key) are left alone.
        Lists every key of the store (``ListVectors`` pages on S3 Vectors), so it costs a scan
        of the index.

        Args:
            keep: The ids of every product that should stay.
            dry_run: Count what would be deleted; delete nothing.

        Returns:
            A report with ``pruned`` (products) and ``vectors_deleted``.

        Example:
            >>> searcher.prune(p.product_id for p in catalog)  # doctest: +SKIP
        """
        return prune_products(self._store, keep, dry_run=dry_run, batch_size=self._batch_size)

    def get_product(self, product_id: str) -> ProductView | None:
        """The product as stored, or ``None`` when none of its vectors exists.

        ``vector_types`` lists ``video``/``audio``/``document`` when the product has segments.
        """
        return product_view(self._store, product_id)

    # ------------------------------------------------------------------ search

    def search(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        search_mode: SearchMode = "combined",
        top_k: int = 5,
        filter: Filter | None = None,
        text_weight: float = 0.5,
        fusion: Fusion = "mean",
        hybrid: bool | None = None,
        lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
        collapse: Collapse = "product",
    ) -> list[SearchResult]:
        """Find the ``top_k`` products closest to a text, an image, or both.

        Args:
            text: What the shopper typed.
            image: A photo: bytes, a local path, an ``s3://`` URI or a Pillow image.
            search_mode: Which stored vectors to search: ``"text"``, ``"image"``,
                ``"combined"``, the segments of products' ``"video"``, ``"audio"`` or
                ``"document"`` (see :meth:`index_media`), or ``"all"`` (every type; each
                product appears once, with the vector that matched best).
            top_k: Products to return, 1..100.
            filter: Metadata filter (S3 Vectors filter language), AND-ed with the mode's
                ``type`` filter.
            text_weight: Weight of the text part when both are given (image: ``1 - w``).
            fusion: ``"mean"`` queries once with the normalised weighted mean of both query
                vectors (as the AWS sample does); ``"rrf"`` queries with each and merges the two
                rankings by weighted reciprocal rank (k = 60).
            hybrid: Also rank by the query's words (BM25 over the store's full-text fields,
                fused with the vector ranking in the same store call): exact terms such as a
                brand, a model number or a size then count. ``None`` (default): on when the
                store has full-text fields and the query has text; ``True``: required
                (ConfigurationError if the store cannot); ``False``: vectors only. With text
                and a photo, the words join the text (``fusion="rrf"``) or the whole query.
            lexical_weight: The words' share of a hybrid score, in [0, 1]: 0 ranks by meaning
                only, 1 by words only; 0.3 by default (``score = (1 - w) * similarity + w *
                BM25 / best BM25``). Beside a photo the words weigh the text's share
                (``text_weight``).
            collapse: ``"product"`` (default): one hit per product; ``"variant"``: one per
                variant group (:attr:`Product.variant_group`), its best member, the others
                found in ``variants``; ``top_k`` then counts groups.

        Query embeddings use a retrieval purpose named after what is searched:
        ``TEXT_RETRIEVAL`` for text vectors, ``IMAGE_RETRIEVAL`` for image vectors,
        ``VIDEO_RETRIEVAL``, ``AUDIO_RETRIEVAL`` and ``DOCUMENT_RETRIEVAL`` for segments,
        ``GENERIC_RETRIEVAL`` for combined vectors or all types. A segment hit carries
        ``segment_start``/``segment_end``/``segment_unit`` and ``source_uri``.

        Raises:
            InvalidInputError: Bad arguments (checked before any embedding or store call);
                ``UnsupportedMediaError`` for an image file that does not exist.
            InvalidFilterError: ``filter`` is outside the filter language.
            ConfigurationError: The store holds vectors of another embedding model, or
                ``hybrid=True`` and the store has no active full-text field.

        Example:
            >>> searcher.search("red summer dress", top_k=3)  # doctest: +SKIP
            >>> searcher.search("Carryall WH-1000XM5", hybrid=True)  # doctest: +SKIP
            >>> searcher.search(image="photo.jpg", search_mode="image")  # doctest: +SKIP
            >>> searcher.search("in green", image="photo.jpg", fusion="rrf")  # doctest: +SKIP
            >>> hits = searcher.search("descaling", search_mode="video")  # doctest: +SKIP
            >>> hits[0].product_id, hits[0].segment_start, hits[0].segment_end  # doctest: +SKIP
            ('P-KETTLE', 80.0, 85.0)
        """
        return self._search.search(
            text,
            image,
            search_mode=search_mode,
            top_k=top_k,
            filter=filter,
            text_weight=text_weight,
            fusion=fusion,
            hybrid=hybrid,
            lexical_weight=lexical_weight,
            collapse=collapse,
        )

    def similar(
        self,
        product_id: str,
        *,
        top_k: int = 5,
        search_mode: SearchMode = "combined",
        filter: Filter | None = None,
        collapse: Collapse = "product",
    ) -> list[SearchResult]:
        """Products like ``product_id``, ranked by the product's own stored vector: no
        embedding call ("similar products" on a product page).

        The query is the product's vector of ``search_mode``'s type (its combined vector for
        ``combined``, ``all`` and the media modes, or when it lacks the type asked for); the
        product itself is never among the results; grouping by product and ``filter`` are as in
        :meth:`search`. ``similarity`` is to that vector and is also the ``score``. With
        ``collapse="variant"`` the product's whole variant group is left out too.

        Raises:
            ProductNotFoundError: The store holds no vector of ``product_id``.
            InvalidInputError: Bad ``top_k``, ``search_mode``, ``filter`` or ``collapse``.

        Example:
            >>> searcher.similar("B0SAMPLE21", top_k=4)  # doctest: +SKIP
        """
        record = own_vector(self._store, product_id, search_mode)
        return self._search.similar(
            record.vector,
            product_id,
            search_mode=search_mode,
            top_k=top_k,
            filter=filter,
            collapse=collapse,
            group=group_of(record),
        )

    def explain_no_results(
        self, *, search_mode: SearchMode = "combined", filter: Filter | None = None
    ) -> str:
        """Why a search in ``search_mode`` with ``filter`` found nothing, in one line a person
        can act on: the store holds no vectors of that kind, or no product has a key the
        filter names (with the closest key that exists), or no product matches it. Two store
        queries, no embedding call.

        Example:
            >>> searcher.explain_no_results(filter={"colour": "red"})  # doctest: +SKIP
            "no combined vector has metadata key 'colour' (did you mean 'color'?); ..."
        """
        return self._search.explain_no_results(search_mode=search_mode, filter=filter)

    # ------------------------------------------------------------------ helpers

    def _index_with(
        self,
        items: Sequence[Product],
        embed: EmbedFn,
        progress: ProgressCallback | None,
        started: float,
    ) -> IngestReport:
        """Plan ``items`` window by window and run the plans, vectors coming from ``embed``
        (the embedder, or a batch job's results: ``_batch_ingest``)."""
        ensure_text_fields(self._store, self._text_fields)
        run = IngestRun(
            embed=embed,
            store=self._store,
            policy=self._policy,
            weight=self._weight,
            batch_size=self._batch_size,
            total=len(items),
            progress=progress,
        )
        windows = list(self._windows(items, ramp=True))
        plans = self._planner.plan_ahead(windows, readers=min(8, self._max_concurrency))
        # Closed here, not when the generator is collected: a run that stops or fails must not
        # leave the look-ahead planner reading the store after index() has returned.
        with closing(plans):
            return run.run(plans, self._max_concurrency, started=started)

    def _plans(self, items: Sequence[Product]) -> Iterator[list[ProductPlan]]:
        """The plans of ``items``, a window at a time (images read, store compared)."""
        with ThreadPoolExecutor(self._max_concurrency) as pool:
            for window in self._windows(items):
                yield self._planner.plan(window, pool)

    def _windows(
        self, items: Sequence[Product], *, ramp: bool = False
    ) -> Iterator[Sequence[Product]]:
        full = max(self._batch_size, 4 * self._max_concurrency)
        return product_windows(items, size=full, first=self._max_concurrency if ramp else full)

    def _check_products(self, products: Iterable[Product]) -> list[Product]:
        return check_products(
            products, max_images=self._max_images, main_image_only=self._main_only
        )
