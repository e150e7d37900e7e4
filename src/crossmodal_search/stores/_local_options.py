"""The options of ``LocalVectorStore``, checked before any directory is opened or locked, and
compared with what an existing directory holds."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import ConfigurationError, IndexMismatchError, InvalidInputError
from crossmodal_search.stores._ann import Accelerator, AcceleratorName, make_accelerator
from crossmodal_search.stores._files import Manifest, StorageDType
from crossmodal_search.stores._fulltext import analyzer
from crossmodal_search.stores._kernels import (
    DotKernel,
    Float16Kernel,
    ScanDType,
    _Format,
    require_numkong,
    scan_format,
    validate_float16_kernel,
)
from crossmodal_search.stores._limits import (
    DEFAULT_NON_FILTERABLE_KEYS,
    StoreLimits,
    validate_dimension,
    validate_distance_metric,
    validate_non_filterable_keys,
)
from crossmodal_search.stores._persist import SegmentLog
from crossmodal_search.stores._text import TextField, validate_text_fields

__all__ = ["MAP_BYTES", "LocalOptions"]

logger = logging.getLogger(__name__)

#: With ``memory_map=None`` a store whose vector files hold at least this many bytes is mapped.
MAP_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LocalOptions:
    """The constructor's options, checked before any directory is opened or locked."""

    dimension: int | None
    distance_metric: DistanceMetric | None
    non_filterable: frozenset[str]
    explicit_keys: bool
    limits: StoreLimits
    storage_dtype: StorageDType | None
    read_only: bool
    accelerator: Accelerator | None
    float16_kernel: Float16Kernel
    scan_format: _Format | None
    scan_kernel: DotKernel | None
    text_fields: tuple[TextField, ...] = ()
    memory_map: bool | None = None

    @classmethod
    def check(
        cls,
        *,
        dimension: int | None,
        distance_metric: DistanceMetric | None,
        non_filterable_metadata_keys: Iterable[str],
        limits: StoreLimits | None,
        storage_dtype: StorageDType | None,
        read_only: bool,
        accelerator: AcceleratorName | Accelerator | None,
        float16_kernel: Float16Kernel,
        scan_dtype: ScanDType | None,
        text_fields: Iterable[TextField] = (),
        memory_map: bool | None = None,
    ) -> LocalOptions:
        validate_float16_kernel(float16_kernel)
        if memory_map not in (None, True, False):
            raise InvalidInputError(f"memory_map must be True, False or None, got {memory_map!r}")
        if memory_map and accelerator is not None:
            raise ConfigurationError(
                "memory_map and accelerator are alternatives: an accelerator reads every vector "
                "into memory (its copy or graph is built from them)"
            )
        fields = validate_text_fields(text_fields)
        for f in fields:
            analyzer(f.language)  # a language that stems needs PyStemmer: say so now
        fmt = scan_format(scan_dtype)
        scan_kernel = None if fmt is None else require_numkong(f"scan_dtype={scan_dtype!r}", fmt)
        if fmt is not None and accelerator is not None:
            raise ConfigurationError(
                "scan_dtype and accelerator are alternatives: the accelerator does its own scan"
            )
        if scan_dtype == "bfloat16" and storage_dtype == "float16":
            raise ConfigurationError(
                "scan_dtype='bfloat16' needs float32 storage (float16 rows are scanned as they are)"
            )
        if storage_dtype not in (None, "float32", "float16"):
            raise InvalidInputError(
                f"storage_dtype must be 'float32' or 'float16', got {storage_dtype!r}"
            )
        limits = limits or StoreLimits()
        if distance_metric is not None:
            validate_distance_metric(distance_metric)
        return cls(
            dimension=dimension,
            distance_metric=distance_metric,
            non_filterable=validate_non_filterable_keys(non_filterable_metadata_keys, limits),
            explicit_keys=non_filterable_metadata_keys is not DEFAULT_NON_FILTERABLE_KEYS,
            limits=limits,
            storage_dtype=storage_dtype,
            read_only=read_only,
            accelerator=make_accelerator(accelerator),
            float16_kernel=float16_kernel,
            scan_format=fmt,
            scan_kernel=scan_kernel,
            text_fields=fields,
            memory_map=memory_map,
        )

    def maps(self, manifest: Manifest) -> bool:
        """Whether a store directory holding ``manifest`` is opened by mapping its vectors."""
        if self.memory_map is not None:
            return self.memory_map
        if self.accelerator is not None:
            return False
        return sum(s.vectors_bytes for s in manifest.segments) >= MAP_BYTES

    def settle(self, log: SegmentLog, path: Path) -> Manifest:
        """The stored settings (checked against the options), or a new store's, committed."""
        if log.manifest is None:
            manifest = self.new_manifest(path)
            log.create(manifest)
            return manifest
        self.check_stored(log.manifest, path)
        missing = self.missing_text_fields(log.manifest)
        if missing and log.read_only:
            raise IndexMismatchError(
                f"store at {path} has no text field {missing[0].key!r}; open it for "
                "writing to add it (a read-only store cannot)"
            )
        if missing:
            fields = (*log.manifest.text_fields, *missing)
            log.set_text_fields(validate_text_fields(fields))
            logger.info("%s: added text fields %s", path, [f.key for f in missing])
        bfloat16_scan = self.scan_format is not None and self.scan_format.name == "bfloat16"
        if bfloat16_scan and log.manifest.storage_dtype == "float16":
            raise ConfigurationError(
                f"scan_dtype='bfloat16' needs float32 storage; {path} holds float16 vectors"
            )
        return log.manifest

    def new_manifest(self, path: Path | None) -> Manifest:
        """The settings of a new store."""
        if self.dimension is None:
            raise ConfigurationError(
                "dimension is required to create a new store"
                + (f" (no store found at {path})" if path else "")
            )
        return Manifest(
            dimension=validate_dimension(self.dimension, self.limits),
            distance_metric=self.distance_metric or "cosine",
            storage_dtype=self.storage_dtype or "float32",
            non_filterable_metadata_keys=self.non_filterable,
            text_fields=self.text_fields,
        )

    def check_stored(self, manifest: Manifest, where: Path) -> None:
        """An explicit option that contradicts the stored store is an IndexMismatchError."""
        if self.dimension is not None and self.dimension != manifest.dimension:
            raise IndexMismatchError(
                f"store at {where} has dimension {manifest.dimension}, not {self.dimension}"
            )
        if self.distance_metric is not None and self.distance_metric != manifest.distance_metric:
            raise IndexMismatchError(
                f"store at {where} uses distance metric {manifest.distance_metric!r}, "
                f"not {self.distance_metric!r}"
            )
        if self.storage_dtype is not None and self.storage_dtype != manifest.storage_dtype:
            raise IndexMismatchError(
                f"store at {where} stores {manifest.storage_dtype}, not {self.storage_dtype}"
            )
        stored_keys = manifest.non_filterable_metadata_keys
        if self.explicit_keys and stored_keys != self.non_filterable:
            raise IndexMismatchError(
                f"store at {where} has non-filterable keys {sorted(stored_keys)}, "
                f"not {sorted(self.non_filterable)}"
            )
        stored_fields = {f.key: f for f in manifest.text_fields}
        for f in self.text_fields:
            had = stored_fields.get(f.key)
            if had is not None and had.language != f.language:
                raise IndexMismatchError(
                    f"store at {where} analyzes text field {f.key!r} as "
                    f"{had.language or 'standard'}, not {f.language or 'standard'}: to change "
                    "it, remove_text_fields then add_text_fields (the index is rebuilt)"
                )
        validate_dimension(manifest.dimension, self.limits)

    def missing_text_fields(self, manifest: Manifest) -> tuple[TextField, ...]:
        """Text fields asked for that the stored store does not have yet."""
        have = {f.key for f in manifest.text_fields}
        return tuple(f for f in self.text_fields if f.key not in have)
