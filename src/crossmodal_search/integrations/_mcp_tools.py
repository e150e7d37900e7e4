"""The MCP tools: search, similar products, one product, the filterable keys.

Each tool validates its arguments (the SDK checks the input schema: types, ranges, lengths; the
tool checks the filter language, the photo and the product id) before any embedding call, runs
the blocking searcher on a worker thread, and answers compact structured content plus, when
asked, the product photos as image content.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from mcp_types import CallToolResult, ContentBlock, TextContent
from pydantic import Field

from crossmodal_search.errors import InvalidFilterError, InvalidInputError
from crossmodal_search.integrations._mcp_errors import tool_errors
from crossmodal_search.integrations._mcp_images import (
    ProductPhotos,
    QueryPhoto,
    QueryPhotos,
    clip,
    relative_in_root,
)
from crossmodal_search.integrations._mcp_keys import sample_filter_keys
from crossmodal_search.integrations._mcp_models import (
    FilterKeysOutput,
    Hit,
    ImageSource,
    ProductOutput,
    QueryEcho,
    SearchOutput,
)
from crossmodal_search.search import (
    DEFAULT_LEXICAL_WEIGHT,
    CrossmodalSearcher,
    Fusion,
    SearchMode,
    SearchResult,
)
from crossmodal_search.stores import validate_filter
from crossmodal_search.web import ImageRoot, S3ImageLinks

__all__ = ["CatalogTools"]

#: Longest query text (as the web API).
MAX_QUERY_CHARS = 8192
#: Largest filter accepted, as JSON (as the web API).
MAX_FILTER_CHARS = 16 * 1024
#: Photos attached to one answer at most (each a thumbnail).
MAX_ATTACHED_PHOTOS = 10

TopK = Annotated[int, Field(ge=1, le=100, description="How many products to return (1-100).")]
FilterArg = Annotated[
    dict[str, Any] | None,
    Field(
        description="Metadata filter in the S3 Vectors filter language, e.g. "
        '{"color": "green", "price": {"$lt": 50}}; list_filter_keys shows the keys and values.'
    ),
]
ModeArg = Annotated[
    SearchMode,
    Field(
        description="Which stored vectors to compare with: combined (text and photo of each "
        "product), text, image, all, or the segments of video/audio/document."
    ),
]
ProductId = Annotated[str, Field(min_length=1, max_length=1024, description="A product id.")]
IncludeImages = Annotated[
    bool,
    Field(description="Attach each product's photo (a thumbnail, at most 10) as image content."),
]
TextArg = Annotated[
    str | None,
    Field(max_length=MAX_QUERY_CHARS, description="What the shopper describes."),
]
ImagePathArg = Annotated[
    str | None,
    Field(
        max_length=4096,
        description="A photo file under the server's image root (relative to it, or an "
        "absolute path inside it).",
    ),
]
ImageBase64Arg = Annotated[
    str | None,
    Field(description="A photo (JPEG, PNG, GIF or WebP), base64; a data: URL is fine."),
]
ImageUriArg = Annotated[
    str | None,
    Field(
        max_length=1024,
        description="An s3://bucket/key photo the server's AWS credentials can read.",
    ),
]
FusionArg = Annotated[
    Fusion,
    Field(
        description="mean: one query with the weighted mean of text and photo; rrf: one "
        "query each, rankings merged by reciprocal rank."
    ),
]
TextWeightArg = Annotated[
    float,
    Field(ge=0.0, le=1.0, description="Weight of the text; the photo gets 1 - it."),
]
HybridArg = Annotated[
    bool | None,
    Field(
        description="Rank by the query's words too (brands, model numbers, sizes match "
        "exactly): null = when the catalog has full-text fields, true = required, "
        "false = meaning only."
    ),
]
LexicalWeightArg = Annotated[
    float,
    Field(ge=0.0, le=1.0, description="The words' share of a hybrid score."),
]


@dataclass(frozen=True)
class CatalogTools:
    """What the tools share: the searcher, the photo handling and the image links."""

    searcher: CrossmodalSearcher
    root: ImageRoot | None
    query_photos: QueryPhotos
    product_photos: ProductPhotos
    s3_images: S3ImageLinks | None

    async def search_products(
        self,
        text: TextArg = None,
        image_path: ImagePathArg = None,
        image_base64: ImageBase64Arg = None,
        image_uri: ImageUriArg = None,
        mode: ModeArg = "combined",
        fusion: FusionArg = "mean",
        text_weight: TextWeightArg = 0.5,
        top_k: TopK = 10,
        filter: FilterArg = None,
        include_images: IncludeImages = False,
        hybrid: HybridArg = None,
        lexical_weight: LexicalWeightArg = DEFAULT_LEXICAL_WEIGHT,
    ) -> Annotated[CallToolResult, SearchOutput]:
        """Search the product catalog by a text, a photo, or both (one photo: image_path,
        image_base64 or image_uri). Results are products, best first, with how similar each is
        to the query and which of its vectors matched. Costs one embedding call per part."""
        with tool_errors("search_products"):
            query = text.strip() if text and text.strip() else None
            source = _photo_source(image_path, image_base64, image_uri)
            if query is None and source is None:
                raise InvalidInputError("give a text, a photo, or both")
            checked = _checked_filter(filter)
            photo = None
            if source is not None:
                photo = await self.query_photos.load(
                    path=image_path, data=image_base64, uri=image_uri
                )
            results = await self._search(
                photo,
                query,
                mode=mode,
                fusion=fusion,
                weight=text_weight,
                top_k=top_k,
                filter=checked,
                hybrid=hybrid,
                lexical_weight=lexical_weight,
            )
            echo = QueryEcho(
                text=query,
                image=source,
                mode=mode,
                fusion=fusion,
                text_weight=text_weight,
                top_k=top_k,
                filter=checked,
                hybrid=hybrid,
                lexical_weight=lexical_weight,
            )
            return await self._answer(results, echo, include_images)

    async def _search(
        self,
        photo: QueryPhoto | None,
        text: str | None,
        *,
        mode: SearchMode,
        fusion: Fusion,
        weight: float,
        top_k: int,
        filter: dict[str, Any] | None,
        hybrid: bool | None,
        lexical_weight: float,
    ) -> list[SearchResult]:
        budget = self.query_photos.budget
        held = photo.decode_bytes if photo is not None else 0
        async with budget.reserve(held) if held else contextlib.nullcontext():
            return await anyio.to_thread.run_sync(
                lambda: self.searcher.search(
                    text,
                    photo.image if photo is not None else None,
                    search_mode=mode,
                    top_k=top_k,
                    filter=filter,
                    text_weight=weight,
                    fusion=fusion,
                    hybrid=hybrid,
                    lexical_weight=lexical_weight,
                )
            )

    async def similar_products(
        self,
        product_id: ProductId,
        mode: ModeArg = "combined",
        top_k: TopK = 10,
        filter: FilterArg = None,
        include_images: IncludeImages = False,
    ) -> Annotated[CallToolResult, SearchOutput]:
        """Products like one product of the catalog ("more like this"), ranked by its own
        stored vector: no embedding call. The product itself is not among them."""
        with tool_errors("similar_products"):
            checked = _checked_filter(filter)
            results = await anyio.to_thread.run_sync(
                lambda: self.searcher.similar(
                    product_id, top_k=top_k, search_mode=mode, filter=checked
                )
            )
            echo = QueryEcho(product_id=product_id, mode=mode, top_k=top_k, filter=checked)
            return await self._answer(results, echo, include_images)

    async def get_product(
        self,
        product_id: ProductId,
        include_image: Annotated[
            bool, Field(description="Attach the product photo (a thumbnail) as image content.")
        ] = False,
    ) -> Annotated[CallToolResult, ProductOutput]:
        """One product as stored: title, full description, photo, metadata, stored vectors."""
        with tool_errors("get_product"):
            view = await anyio.to_thread.run_sync(self.searcher.get_product, product_id)
            if view is None:
                raise InvalidInputError(f"no product {clip(product_id)} in the catalog")
            photo = await self.product_photos.thumbnail(view.image_path) if include_image else None
            output = ProductOutput(
                product_id=view.product_id,
                title=view.title,
                text=view.text,
                image=self._image(view.image_path),
                image_url=self._image_url(view.image_path),
                photo_attached=photo is not None,
                metadata=dict(view.metadata),
                vector_types=view.vector_types,
            )
            content: list[ContentBlock] = [_json_text(output.model_dump(mode="json"))]
            if photo is not None:
                content.append(photo)
            return CallToolResult(
                content=content, structured_content=output.model_dump(mode="json")
            )

    async def list_filter_keys(self) -> FilterKeysOutput:
        """The metadata keys products can be filtered on, with their most common values (from
        a sample of the store), and the filter language's operators: build search filters
        from these. No embedding call."""
        with tool_errors("list_filter_keys"):
            return await anyio.to_thread.run_sync(sample_filter_keys, self.searcher.store)

    async def _answer(
        self, results: Sequence[SearchResult], echo: QueryEcho, include_images: bool
    ) -> CallToolResult:
        """The structured answer, its JSON as text, and the photos asked for."""
        photos: list[ContentBlock] = []
        hits = []
        attached = 0
        for result in results:
            photo = None
            if include_images and attached < MAX_ATTACHED_PHOTOS:
                photo = await self.product_photos.thumbnail(result.image_path)
            if photo is not None:
                # A caption before each photo says whose it is.
                caption = f"{result.product_id}: {result.title}"
                photos += [TextContent(type="text", text=caption), photo]
                attached += 1
            hits.append(self._hit(result, attached=photo is not None))
        note = None
        if not hits:
            note = await anyio.to_thread.run_sync(
                lambda: self.searcher.explain_no_results(search_mode=echo.mode, filter=echo.filter)
            )
        output = SearchOutput(results=hits, query=echo, note=note).model_dump(mode="json")
        return CallToolResult(content=[_json_text(output), *photos], structured_content=output)

    def _hit(self, result: SearchResult, *, attached: bool) -> Hit:
        return Hit(
            product_id=result.product_id,
            title=result.title,
            similarity=result.similarity,
            score=result.score,
            part_similarities=dict(result.part_similarities),
            matched_type=result.matched_type,
            matched_by=result.matched_by,
            matched_words=list(result.matched_words),
            image=self._image(result.image_path),
            image_url=self._image_url(result.image_path),
            photo_attached=attached,
            metadata=dict(result.metadata),
            segment=result.segment_label() or None,
            source=_source(result.source_uri),
        )

    def _image(self, image_path: str | None) -> str | None:
        """A photo as the agent may use it: relative to the image root, or its S3 URI. A file
        elsewhere on the server's disk is not disclosed."""
        if image_path is not None and image_path.startswith("s3://"):
            return image_path
        return relative_in_root(self.root, image_path)

    def _image_url(self, image_path: str | None) -> str | None:
        return self.s3_images.url_for(image_path) if self.s3_images is not None else None


def _photo_source(
    image_path: str | None, image_base64: str | None, image_uri: str | None
) -> ImageSource | None:
    """Which argument holds the query photo (at most one may)."""
    given: list[ImageSource] = []
    if image_path is not None:
        given.append("image_path")
    if image_base64 is not None:
        given.append("image_base64")
    if image_uri is not None:
        given.append("image_uri")
    if len(given) > 1:
        raise InvalidInputError(f"give one photo, not {len(given)}: {', '.join(given)}")
    return given[0] if given else None


def _checked_filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filter, checked against the language and its size before any call."""
    if not value:
        return None
    size = len(json.dumps(value))
    if size > MAX_FILTER_CHARS:
        raise InvalidFilterError(
            f"the filter is {size} characters as JSON; at most {MAX_FILTER_CHARS} are accepted"
        )
    validate_filter(value)
    return value


def _source(uri: str | None) -> str | None:
    # An S3 URI names the catalog's media; a local path would only reveal the server's disk.
    if uri is None:
        return None
    return uri if uri.startswith("s3://") else uri.rsplit("/", 1)[-1]


def _json_text(payload: dict[str, Any]) -> TextContent:
    return TextContent(type="text", text=json.dumps(payload, ensure_ascii=False))
