"""The one error tree of crossmodal-search.

Every error the SDK raises on purpose derives from :class:`CrossmodalSearchError`. AWS errors
(``botocore.exceptions.ClientError`` and transport errors) are translated in exactly one place,
:func:`crossmodal_search._aws.map_client_errors`, with the original chained as ``__cause__``::

    CrossmodalSearchError
    ├── InvalidInputError (also ValueError)       bad input, caught before any network call
    │   ├── UnsupportedMediaError                 missing or unreadable media file (image,
    │   │                                         audio, video, document), unknown format
    │   ├── DimensionMismatchError                vector length differs from the store/embedder
    │   ├── InvalidFilterError                    filter outside the S3 Vectors filter language
    │   ├── ProductNotFoundError(product_id)      no vector of that product in the store
    │   └── MetadataLimitError                    metadata over the S3 Vectors size/key limits
    ├── ConfigurationError                        wrong settings, missing optional extra
    │   ├── IndexMismatchError                    existing index has another dimension/metric
    │   └── ForeignIndexError                     the index holds vectors another tool wrote
    ├── StoreError(path)                          a local store directory cannot be used as is
    │   ├── StoreLockedError                      another process writes the local store
    │   ├── StoreCorruptedError                   manifest lost or unreadable, a segment damaged:
    │   │                                         nothing is deleted; `crossmodal store recover`
    │   └── StoreIOError(errno)                   the file system refused a read or write (disk
    │                                             full, read-only mount); nothing was changed
    ├── ServiceError(code, request_id, status)    AWS answered with an error
    │   ├── AccessDeniedError                     missing IAM permission / model access
    │   ├── ResourceNotFoundError                 bucket, index, model or job does not exist
    │   ├── ServiceValidationError                the service rejected the request (HTTP 400)
    │   ├── TransientServiceError                 throttling, 5xx, timeouts: retried
    │   └── RetryExhaustedError(attempts)         a transient error outlived the retry policy
    ├── PartialWriteError(written, failed)        some batches of a write landed, others did not
    ├── EmbeddingJobError                         an async/batch Bedrock job failed (per segment)
    │   └── JobTimeoutError                       a job did not finish within the wait limit
    └── IngestError                               ingestion could not proceed at all
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AccessDeniedError",
    "ConfigurationError",
    "CrossmodalSearchError",
    "DimensionMismatchError",
    "EmbeddingJobError",
    "ForeignIndexError",
    "IndexMismatchError",
    "IngestError",
    "InvalidFilterError",
    "InvalidInputError",
    "JobTimeoutError",
    "MetadataLimitError",
    "PartialWriteError",
    "ProductNotFoundError",
    "ResourceNotFoundError",
    "RetryExhaustedError",
    "ServiceError",
    "ServiceValidationError",
    "StoreCorruptedError",
    "StoreError",
    "StoreIOError",
    "StoreLockedError",
    "TransientServiceError",
    "UnsupportedMediaError",
]


class CrossmodalSearchError(Exception):
    """Base class of every error raised by crossmodal-search."""


class InvalidInputError(CrossmodalSearchError, ValueError):
    """The caller's input is invalid; raised before any network call."""


class UnsupportedMediaError(InvalidInputError):
    """An image, document, audio or video input cannot be read or sent."""


class DimensionMismatchError(InvalidInputError):
    """A vector's length does not match the expected dimension."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class InvalidFilterError(InvalidInputError):
    """A metadata filter is outside the S3 Vectors filter language."""


class ProductNotFoundError(InvalidInputError):
    """The store holds no vector of ``product_id`` (``similar`` of an unknown product)."""

    def __init__(self, message: str, *, product_id: str) -> None:
        super().__init__(message)
        self.product_id = product_id


class MetadataLimitError(InvalidInputError):
    """Metadata breaks an S3 Vectors limit; names the record key and metadata key."""

    def __init__(
        self, message: str, *, record_key: str | None = None, metadata_key: str | None = None
    ):
        super().__init__(message)
        self.record_key = record_key
        self.metadata_key = metadata_key


class ConfigurationError(CrossmodalSearchError):
    """The SDK is configured in a way that cannot work (settings, missing extra, ...)."""


class IndexMismatchError(ConfigurationError):
    """An existing index is incompatible with the requested dimension or metric."""


class ForeignIndexError(ConfigurationError):
    """The store holds vectors, but none written by crossmodal-search, so a product search
    cannot use them (an index built by the S3 Vectors CLI or langchain-aws, say).

    ``sample_keys`` and ``metadata_keys`` say what it holds; query it directly with
    ``store.query`` (CLI: ``crossmodal search --raw``), or index the catalog with the searcher.
    """

    def __init__(
        self, message: str, *, sample_keys: Sequence[str], metadata_keys: Sequence[str]
    ) -> None:
        super().__init__(message)
        self.sample_keys = tuple(sample_keys)
        self.metadata_keys = tuple(metadata_keys)


class StoreError(CrossmodalSearchError):
    """A local store directory cannot be used as it is; ``path`` names it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreLockedError(StoreError):
    """Another process holds the write lock of a local store directory."""


class StoreCorruptedError(StoreError):
    """A local store's manifest is missing or unreadable, or a segment is damaged.

    Nothing was deleted: the message names the directory and the command that rebuilds or
    explains it (``crossmodal store recover DIR`` / ``crossmodal store check DIR``).
    """


class StoreIOError(StoreError):
    """The file system refused a read or write of a local store (disk full, read-only mount,
    permissions). ``errno`` is the OS error number; the store holds what it held before."""

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None):
        super().__init__(message, path=path)
        self.errno = errno


class ServiceError(CrossmodalSearchError):
    """AWS answered with an error. Keeps the AWS error code, request id and HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        request_id: str | None = None,
        status_code: int | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id
        self.status_code = status_code
        self.operation = operation


class AccessDeniedError(ServiceError):
    """Missing IAM permission or model access."""


class ResourceNotFoundError(ServiceError):
    """The bucket, index, model or job does not exist."""


class ServiceValidationError(ServiceError):
    """The service rejected the request as invalid."""


class TransientServiceError(ServiceError):
    """Throttling, a 5xx or a timeout: worth retrying."""


class RetryExhaustedError(ServiceError):
    """A transient error persisted through every attempt of the retry policy."""

    def __init__(self, message: str, *, attempts: int, last_error: ServiceError) -> None:
        super().__init__(
            message,
            code=last_error.code,
            request_id=last_error.request_id,
            status_code=last_error.status_code,
            operation=last_error.operation,
        )
        self.attempts = attempts
        self.last_error = last_error


class PartialWriteError(CrossmodalSearchError):
    """A write was split into batches and some of them failed.

    ``written`` holds the keys known to be stored, ``failed`` the keys that were not.
    """

    def __init__(self, message: str, *, written: Sequence[str], failed: Sequence[str]) -> None:
        super().__init__(message)
        self.written = tuple(written)
        self.failed = tuple(failed)


class EmbeddingJobError(CrossmodalSearchError):
    """An asynchronous or batch Bedrock job failed, wholly or for some segments.

    ``job_id`` names the job (invocation or job ARN), ``status`` is its last known status,
    ``failures`` lists one line per failed segment or record (empty when the whole job failed)
    and ``retryable`` says a new job may succeed where this one did not (throttled inside the
    job, a record left out of its output) rather than the input being refused.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        status: str | None = None,
        failures: Sequence[str] = (),
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.failures = tuple(failures)
        self.retryable = retryable


class JobTimeoutError(EmbeddingJobError):
    """An asynchronous or batch Bedrock job did not finish within the wait limit."""


class IngestError(CrossmodalSearchError):
    """Catalog ingestion could not proceed at all (per-item failures go in the report)."""
