"""Product images served from the catalog's image root, and nothing outside it."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from crossmodal_search.errors import ConfigurationError

#: Suffix -> MIME type of the files ``/images/...`` serves; anything else under the root is hidden.
IMAGE_MEDIA_TYPES: dict[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
}

IMAGES_PREFIX = "/images/"


class ImageRoot:
    """The one directory product images may be read from.

    ``resolve`` maps a URL path to a file, refusing absolute paths, ``..`` and ``.`` segments,
    backslashes, NUL bytes, drive letters, non-image suffixes and symlinks whose target lies
    outside the root (the check runs on the fully resolved path, after URL decoding).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_dir():
            raise ConfigurationError(f"image root {str(path)!r} is not a directory")
        self.root = path.resolve(strict=True)

    def resolve(self, relative: str) -> Path | None:
        """The file ``relative`` names inside the root, or ``None`` when it may not be served."""
        if not relative or "\x00" in relative or "\\" in relative:
            return None
        parts = relative.split("/")
        if any(part in ("", ".", "..") for part in parts) or ":" in parts[0]:
            return None
        candidate = self.root.joinpath(*parts)
        if candidate.suffix.lower() not in IMAGE_MEDIA_TYPES:
            return None
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        if not real.is_relative_to(self.root) or not real.is_file():
            return None
        if real.suffix.lower() not in IMAGE_MEDIA_TYPES:
            return None
        return real

    def url_for(self, image_path: str | None) -> str | None:
        """The ``/images/...`` URL of a product image, or ``None`` when it is not under the root."""
        if not image_path or "://" in image_path:
            return None
        path = Path(image_path)
        if not path.is_absolute():
            path = self.root / path
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.root) or real.suffix.lower() not in IMAGE_MEDIA_TYPES:
            return None
        return IMAGES_PREFIX + quote(real.relative_to(self.root).as_posix())

    @staticmethod
    def media_type(path: Path) -> str:
        """MIME type of a file ``resolve`` returned."""
        return IMAGE_MEDIA_TYPES[path.suffix.lower()]
