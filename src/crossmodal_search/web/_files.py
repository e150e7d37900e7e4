"""Product image links: files served from the catalog's image root (and nothing outside it),
and ``s3://`` images linked through presigned URLs."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote

from crossmodal_search._aws import parse_s3_uri
from crossmodal_search.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

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


class S3ImageLinks:
    """Presigned ``GET`` URLs for product images stored in S3, so the browser loads them there.

    Signing happens locally with the client's credentials (no request to AWS); the browser then
    reads the object as the signer, for ``expires_in`` seconds. Only image suffixes are signed.
    Without usable credentials every link is ``None`` (cards show no photo) and one warning is
    logged. Give it a client with ``Config(signature_version="s3v4")`` in the images' region:
    the legacy signature botocore may otherwise pick is refused by newer regions.
    """

    #: Content-Security-Policy source of the presigned URLs' hosts.
    CSP_SOURCE = "https://*.amazonaws.com"

    def __init__(self, client: S3Client, *, expires_in: int = 3600) -> None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int):
            raise ConfigurationError("expires_in must be an int number of seconds")
        if not 1 <= expires_in <= 7 * 24 * 3600:  # SigV4's limit
            raise ConfigurationError("expires_in must be between 1 second and 7 days")
        self._client = client
        self.expires_in = expires_in
        self._warned = threading.Event()

    def url_for(self, image_path: str | None) -> str | None:
        """A presigned URL for an ``s3://`` image, or ``None`` for anything else."""
        if not image_path or not image_path.startswith("s3://"):
            return None
        try:
            bucket, key = parse_s3_uri(image_path)
        except InvalidInputError:
            return None
        if not key or PurePosixPath(key).suffix.lower() not in IMAGE_MEDIA_TYPES:
            return None
        try:
            url: str = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.expires_in
            )
        except Exception as exc:  # botocore.exceptions.NoCredentialsError and kin
            if not self._warned.is_set():
                self._warned.set()
                logger.warning("cannot presign S3 image links (%s): cards show no photo", exc)
            return None
        return url
