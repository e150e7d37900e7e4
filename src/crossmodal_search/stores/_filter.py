"""The Amazon S3 Vectors metadata filter language, validated and evaluated locally.

One implementation serves every store: ``S3VectorsStore`` validates filters with it before a
request is sent, its test fake and ``LocalVectorStore`` evaluate them with it. Two evaluators
share one compiled form: :func:`matches` tests one metadata mapping, :func:`filter_mask`
evaluates a filter over :class:`MetadataColumns` (columnar, dictionary-encoded metadata) with
numpy, a few milliseconds per condition over a million records.

Grammar::

    filter    := {clause, ...}                     (non-empty; several clauses are ANDed)
    clause    := "$and": [filter, ...]  |  "$or": [filter, ...]      (non-empty lists)
               | field: scalar                     (shorthand for {"$eq": scalar})
               | field: {op: operand, ...}         (non-empty; several operators are ANDed)
    op        := $eq $ne (scalar)  $gt $gte $lt $lte (number)
               | $in $nin (non-empty list of scalars)  $exists (bool)
    scalar    := str | int | float | bool          (finite numbers; no None, list or dict)

Semantics (S3 Vectors documents the operators; where it is silent we chose, and both stores
behave the same way because both use this module):

* Implicit AND. ``{"a": 1, "b": 2}`` and ``{"year": {"$gte": 2020, "$lte": 2024}}`` are
  accepted and mean the AND of their parts. S3 Vectors does not document these forms, so for
  portability prefer an explicit ``$and``.
* Types. Numbers compare as IEEE doubles (like JSON numbers: ``1 == 1.0``). Booleans are not
  numbers (``True`` never equals ``1``) and strings never equal numbers. Ordering operators
  only ever match numeric values; on a string or boolean value they are simply false.
* List-valued fields match when **any element** matches: ``{"tags": "red"}`` and
  ``{"tags": {"$in": ["red", "blue"]}}`` match ``tags=["red", "large"]``; ``$gt`` likewise.
* Negations are exact complements: ``$ne`` is ``not $eq`` and ``$nin`` is ``not $in``. So on a
  list field they hold when **no element** matches, and on a **missing field** they are true.
* Missing fields fail every operator except ``$ne``, ``$nin`` and ``$exists: false``.

Invalid filters raise :class:`~crossmodal_search.errors.InvalidFilterError`: an empty filter or
operator object, an unknown operator, an operator in the wrong place (``$and`` inside a field,
``$eq`` at the top level), a nested object as a value, a bare list as a value, a wrong operand
type (``$gt`` on a string, ``$in`` that is not a non-empty list of scalars, ``$exists`` that is not
a bool, ``$and``/``$or`` that is not a non-empty list of objects), None/NaN/infinite operands,
and any field declared non-filterable for the index.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import Filter
from crossmodal_search.errors import InvalidFilterError

__all__ = [
    "FIELD_OPERATORS",
    "LOGICAL_OPERATORS",
    "CompiledFilter",
    "MetadataColumns",
    "compile_filter",
    "filter_mask",
    "matches",
    "normalize_filter",
    "validate_filter",
]

LOGICAL_OPERATORS: frozenset[str] = frozenset({"$and", "$or"})
FIELD_OPERATORS: frozenset[str] = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"}
)
_ORDERING = ("$gt", "$gte", "$lt", "$lte")
_MAX_DEPTH = 64

BoolArray: TypeAlias = npt.NDArray[np.bool_]

# --------------------------------------------------------------------------- value kinds

# A metadata value is classified as one of three kinds; anything else (None, dict, ...) matches
# no operator but "exists". Both evaluators use this, so they agree on odd data too.
_Kind = Literal["b", "n", "s"]


def _classify(value: object) -> tuple[_Kind, bool | float | str] | None:
    if isinstance(value, bool | np.bool_):
        return "b", bool(value)
    if isinstance(value, str):
        return "s", value
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            return "n", float(value)
        except OverflowError:  # an int beyond double range is no number S3 Vectors can hold
            return None
    return None


def _elements(value: object) -> Iterable[object]:
    if isinstance(value, list | tuple):
        return value
    return (value,)


# --------------------------------------------------------------------------- compiled form


class _Node:
    def matches(self, metadata: Mapping[str, object]) -> bool:
        raise NotImplementedError

    def mask(self, columns: MetadataColumns) -> BoolArray:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _And(_Node):
    children: tuple[_Node, ...]

    def matches(self, metadata: Mapping[str, object]) -> bool:
        return all(c.matches(metadata) for c in self.children)

    def mask(self, columns: MetadataColumns) -> BoolArray:
        out = self.children[0].mask(columns)
        for child in self.children[1:]:
            if not out.any():
                break
            out &= child.mask(columns)
        return out


@dataclass(frozen=True, slots=True)
class _Or(_Node):
    children: tuple[_Node, ...]

    def matches(self, metadata: Mapping[str, object]) -> bool:
        return any(c.matches(metadata) for c in self.children)

    def mask(self, columns: MetadataColumns) -> BoolArray:
        out = self.children[0].mask(columns)
        for child in self.children[1:]:
            if out.all():
                break
            out |= child.mask(columns)
        return out


_NUM_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


@dataclass(frozen=True, slots=True)
class _Cond(_Node):
    """One field condition; ``negate`` turns the positive $eq/$in into $ne/$nin."""

    field: str
    op: str  # "$eq", "$in", "$gt", "$gte", "$lt", "$lte", "$exists"
    operand: tuple[tuple[_Kind, bool | float | str], ...] | float | bool
    negate: bool = False

    def _element_matches(self, value: object) -> bool:
        kv = _classify(value)
        if kv is None:
            return False
        if self.op in _NUM_OPS:
            return kv[0] == "n" and bool(_NUM_OPS[self.op](kv[1], self.operand))
        assert isinstance(self.operand, tuple)
        return kv in self.operand

    def matches(self, metadata: Mapping[str, object]) -> bool:
        if self.op == "$exists":
            return (self.field in metadata) == self.operand
        if self.field not in metadata:
            hit = False
        else:
            hit = any(self._element_matches(v) for v in _elements(metadata[self.field]))
        return hit != self.negate

    def mask(self, columns: MetadataColumns) -> BoolArray:
        n = len(columns)
        col = columns.column(self.field)
        if self.op == "$exists":
            present = col.present[:n].copy() if col is not None else np.zeros(n, dtype=bool)
            return present if self.operand else ~present
        hit = np.zeros(n, dtype=bool) if col is None else col.any_element(self, columns.vocab, n)
        return ~hit if self.negate else hit


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A validated filter, ready to evaluate many times. Build with :func:`compile_filter`."""

    _root: _Node
    fields: frozenset[str]

    def matches(self, metadata: Mapping[str, object]) -> bool:
        """Whether one record's metadata satisfies the filter."""
        return self._root.matches(metadata)

    def mask(self, columns: MetadataColumns) -> BoolArray:
        """Boolean mask over the rows of ``columns`` (length ``len(columns)``)."""
        out = self._root.mask(columns)
        return out if out.flags.writeable else out.copy()


# --------------------------------------------------------------------------- validation


def _fail(message: str) -> InvalidFilterError:
    return InvalidFilterError(message)


def _scalar_operand(op: str, value: object, path: str) -> tuple[_Kind, bool | float | str]:
    kv = _classify(value)
    if kv is None:
        kind = "null" if value is None else type(value).__name__
        raise _fail(f"{path}: {op} takes a string, number or boolean, got {kind}")
    if kv[0] == "n" and not math.isfinite(float(kv[1])):
        raise _fail(f"{path}: {op} operand must be a finite number, got {value!r}")
    return kv


def _compile_field(
    field: str, spec: object, path: str, non_filterable: frozenset[str], fields: set[str]
) -> _Node:
    if not field:
        raise _fail(f"{path}: field name must not be empty")
    if field in non_filterable:
        raise _fail(
            f"{path}: metadata key {field!r} is declared non-filterable for this index, "
            "so it cannot be used in a filter"
        )
    fields.add(field)
    if not isinstance(spec, Mapping):
        if isinstance(spec, list | tuple):
            raise _fail(
                f"{path}: a list is not a filter value; use {{{field!r}: {{'$in': [...]}}}}"
            )
        return _Cond(field, "$eq", (_scalar_operand("$eq", spec, path),))
    if not spec:
        raise _fail(f"{path}: empty operator object")
    conds: list[_Node] = []
    for op, operand in spec.items():
        where = f"{path}.{op}"
        if not isinstance(op, str) or not op.startswith("$"):
            raise _fail(
                f"{path}: nested objects are not filter values (found key {op!r}); metadata "
                "values are strings, numbers, booleans or lists, and operators start with '$'"
            )
        if op in LOGICAL_OPERATORS:
            raise _fail(f"{where}: {op} combines whole filters and cannot be used inside a field")
        if op not in FIELD_OPERATORS:
            raise _fail(f"{where}: unknown operator {op!r}; use one of {sorted(FIELD_OPERATORS)}")
        if op in ("$eq", "$ne"):
            conds.append(
                _Cond(field, "$eq", (_scalar_operand(op, operand, where),), negate=op == "$ne")
            )
        elif op in _ORDERING:
            kv = _classify(operand)
            if kv is None or kv[0] != "n" or not math.isfinite(float(kv[1])):
                raise _fail(f"{where}: {op} takes a finite number, got {operand!r}")
            conds.append(_Cond(field, op, float(kv[1])))
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list | tuple) or not operand:
                raise _fail(f"{where}: {op} takes a non-empty list of scalars, got {operand!r}")
            values = tuple(dict.fromkeys(_scalar_operand(op, v, where) for v in operand))
            conds.append(_Cond(field, "$in", values, negate=op == "$nin"))
        else:  # $exists
            if not isinstance(operand, bool | np.bool_):
                raise _fail(f"{where}: $exists takes true or false, got {operand!r}")
            conds.append(_Cond(field, "$exists", bool(operand)))
    return conds[0] if len(conds) == 1 else _And(tuple(conds))


def _compile(
    spec: object, path: str, non_filterable: frozenset[str], fields: set[str], depth: int
) -> _Node:
    if depth > _MAX_DEPTH:
        raise _fail(f"{path}: filter nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(spec, Mapping):
        raise _fail(f"{path}: a filter must be an object (dict), got {type(spec).__name__}")
    if not spec:
        raise _fail(f"{path}: empty filter; pass filter=None for no filter")
    nodes: list[_Node] = []
    for key, value in spec.items():
        where = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise _fail(f"{where}: filter keys must be strings, got {type(key).__name__}")
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list | tuple) or not value:
                raise _fail(f"{where}: {key} takes a non-empty list of filters")
            children = []
            for i, sub in enumerate(value):
                if not isinstance(sub, Mapping):
                    raise _fail(f"{where}[{i}]: {key} items must be filter objects")
                children.append(_compile(sub, f"{where}[{i}]", non_filterable, fields, depth + 1))
            nodes.append(_And(tuple(children)) if key == "$and" else _Or(tuple(children)))
        elif key.startswith("$"):
            hint = (
                " (field operators go inside a field: {field: {op: value}})"
                if key in FIELD_OPERATORS
                else ""
            )
            raise _fail(f"{where}: operator {key!r} is not allowed here{hint}")
        else:
            nodes.append(_compile_field(key, value, where, non_filterable, fields))
    return nodes[0] if len(nodes) == 1 else _And(tuple(nodes))


def compile_filter(filter: Filter, *, non_filterable: Iterable[str] = ()) -> CompiledFilter:
    """Validate ``filter`` and compile it for repeated evaluation.

    Raises:
        InvalidFilterError: The filter is outside the language (see the module docstring).
    """
    fields: set[str] = set()
    root = _compile(filter, "", frozenset(non_filterable), fields, 0)
    return CompiledFilter(root, frozenset(fields))


def validate_filter(filter: Filter, *, non_filterable: Iterable[str] = frozenset()) -> None:
    """Raise :class:`~crossmodal_search.errors.InvalidFilterError` unless ``filter`` is valid.

    Example:
        >>> validate_filter({"genre": "drama", "year": {"$gte": 2020}})
        >>> validate_filter({"year": {"$gt": "2020"}})
        Traceback (most recent call last):
        ...
        crossmodal_search.errors.InvalidFilterError: year.$gt: $gt takes a finite number, ...
    """
    compile_filter(filter, non_filterable=non_filterable)


def normalize_filter(filter: Filter, *, non_filterable: Iterable[str] = frozenset()) -> Any:
    """Validate ``filter`` and return a plain-JSON copy (numpy scalars become Python values).

    The structure is kept as written (shorthand stays shorthand), ready for boto3, which rejects
    numpy scalars.
    """
    compile_filter(filter, non_filterable=non_filterable)
    return _plain(filter)


def _plain(value: object) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    return value


def matches(filter: Filter | CompiledFilter, metadata: Mapping[str, object]) -> bool:
    """Whether ``metadata`` satisfies ``filter`` (validated first).

    Example:
        >>> matches({"tags": "red", "price": {"$lt": 50}}, {"tags": ["red", "xl"], "price": 20})
        True
        >>> matches({"brand": {"$ne": "acme"}}, {})
        True
    """
    compiled = filter if isinstance(filter, CompiledFilter) else compile_filter(filter)
    return compiled.matches(metadata)


def filter_mask(
    filter: Filter | CompiledFilter,
    metadatas: Sequence[Mapping[str, object]] | MetadataColumns,
    *,
    non_filterable: Iterable[str] = frozenset(),
) -> BoolArray:
    """Boolean mask: which of ``metadatas`` satisfy ``filter`` (validated first).

    Pass a :class:`MetadataColumns` to reuse the columnar form across queries; a plain sequence
    of mappings is converted first (O(total metadata size) in Python).
    """
    compiled = (
        filter
        if isinstance(filter, CompiledFilter)
        else compile_filter(filter, non_filterable=non_filterable)
    )
    columns = (
        metadatas
        if isinstance(metadatas, MetadataColumns)
        else MetadataColumns.from_metadata(metadatas)
    )
    return compiled.mask(columns)


# --------------------------------------------------------------------------- columnar metadata


class _Column:
    """One metadata key over all rows: every value is a row of up to ``width`` elements.

    A scalar is a one-element row and a list its elements, which is why "any element matches"
    is the one rule for both. Per element kind there is one lazily created ``(capacity, width)``
    array: string codes (int32, -1 empty), numbers (float64, NaN empty), booleans (int8, -1 empty).
    """

    __slots__ = ("bools", "codes", "nums", "present", "width")

    def __init__(self, capacity: int) -> None:
        self.width = 1
        self.present: BoolArray = np.zeros(capacity, dtype=bool)
        self.codes: npt.NDArray[np.int32] | None = None
        self.nums: npt.NDArray[np.float64] | None = None
        self.bools: npt.NDArray[np.int8] | None = None

    @property
    def capacity(self) -> int:
        return int(self.present.shape[0])

    def _new(self, dtype: Any, fill: Any, capacity: int, width: int) -> Any:
        return np.full((capacity, width), fill, dtype=dtype)

    def reserve(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        old = self.capacity
        present = np.zeros(capacity, dtype=bool)
        present[:old] = self.present
        self.present = present
        for name, fill in (("codes", -1), ("nums", np.nan), ("bools", -1)):
            arr = getattr(self, name)
            if arr is not None:
                new = self._new(arr.dtype, fill, capacity, self.width)
                new[:old] = arr
                setattr(self, name, new)

    def _widen(self, width: int) -> None:
        for name, fill in (("codes", -1), ("nums", np.nan), ("bools", -1)):
            arr = getattr(self, name)
            if arr is not None:
                new = self._new(arr.dtype, fill, self.capacity, width)
                new[:, : self.width] = arr
                setattr(self, name, new)
        self.width = width

    def _array(self, kind: _Kind) -> Any:
        if kind == "s":
            if self.codes is None:
                self.codes = self._new(np.int32, -1, self.capacity, self.width)
            return self.codes
        if kind == "n":
            if self.nums is None:
                self.nums = self._new(np.float64, np.nan, self.capacity, self.width)
            return self.nums
        if self.bools is None:
            self.bools = self._new(np.int8, -1, self.capacity, self.width)
        return self.bools

    def clear(self, row: int | slice) -> None:
        self.present[row] = False
        if self.codes is not None:
            self.codes[row] = -1
        if self.nums is not None:
            self.nums[row] = np.nan
        if self.bools is not None:
            self.bools[row] = -1

    def set(self, row: int, value: object, vocab: dict[str, int], *, fresh: bool = False) -> None:
        """Store ``value`` in ``row``; ``fresh`` rows are known to be empty already."""
        if not fresh:
            self.clear(row)
        self.present[row] = True
        # Fast paths for plain scalars, the common case.
        if type(value) is str:
            code = vocab.get(value)
            if code is None:
                code = vocab[value] = len(vocab)
            self._array("s")[row, 0] = code
            return
        if type(value) is float or (type(value) is int and -(2**1023) < value < 2**1023):
            self._array("n")[row, 0] = value
            return
        elements = list(_elements(value))
        if len(elements) > self.width:
            self._widen(max(len(elements), 2 * self.width))
        for j, element in enumerate(elements):
            kv = _classify(element)
            if kv is None:
                continue
            kind, v = kv
            arr = self._array(kind)
            if kind == "s":
                assert isinstance(v, str)
                code = vocab.get(v)
                if code is None:
                    code = vocab[v] = len(vocab)
                arr[row, j] = code
            else:
                arr[row, j] = v

    def move(self, src: npt.NDArray[np.intp], dst: npt.NDArray[np.intp]) -> None:
        self.present[dst] = self.present[src]
        for arr in (self.codes, self.nums, self.bools):
            if arr is not None:
                arr[dst] = arr[src]

    def any_element(self, cond: _Cond, vocab: Mapping[str, int], n: int) -> BoolArray:
        hit: BoolArray | None = None

        def accumulate(elem: BoolArray) -> None:
            nonlocal hit
            if self.width > 16:
                row: BoolArray = np.any(elem, axis=1)
            else:
                # OR-ing a few columns beats np.any(axis=1), which is slow on narrow rows.
                row = elem[:, 0].copy()
                for j in range(1, self.width):
                    row |= elem[:, j]
            hit = row if hit is None else hit | row

        if cond.op in _NUM_OPS:
            if self.nums is not None:
                with np.errstate(invalid="ignore"):
                    accumulate(_NUM_OPS[cond.op](self.nums[:n], cond.operand))
        else:
            assert isinstance(cond.operand, tuple)
            strings = [vocab[v] for k, v in cond.operand if isinstance(v, str) and v in vocab]
            numbers = [v for k, v in cond.operand if k == "n"]
            flags = [int(v) for k, v in cond.operand if k == "b"]
            for arr, wanted in ((self.codes, strings), (self.nums, numbers), (self.bools, flags)):
                if arr is None or not wanted:
                    continue
                block = arr[:n]
                if len(wanted) > 8:
                    accumulate(np.isin(block, wanted))
                    continue
                elem = block == wanted[0]
                for value in wanted[1:]:
                    elem |= block == value
                accumulate(elem)
        return hit if hit is not None else np.zeros(n, dtype=bool)


class MetadataColumns:
    """Columnar, dictionary-encoded metadata for vectorised filtering.

    Rows are addressed by position (the local store keeps them aligned with its vector matrix).
    Keys in ``non_filterable`` are not indexed: they can never appear in a valid filter.
    """

    def __init__(self, non_filterable: Iterable[str] = (), capacity: int = 0) -> None:
        self._non_filterable = frozenset(non_filterable)
        self._columns: dict[str, _Column] = {}
        self._n = 0
        self._capacity = capacity
        self.vocab: dict[str, int] = {}

    @classmethod
    def from_metadata(
        cls, metadatas: Sequence[Mapping[str, object]], non_filterable: Iterable[str] = ()
    ) -> MetadataColumns:
        """Columns holding ``metadatas`` in order."""
        cols = cls(non_filterable, capacity=len(metadatas))
        cols.resize(len(metadatas))
        for row, md in enumerate(metadatas):
            cols.set_row(row, md, fresh=True)
        return cols

    def __len__(self) -> int:
        return self._n

    def column(self, key: str) -> _Column | None:
        """The column of one metadata key, or None when no row ever had it."""
        return self._columns.get(key)

    def resize(self, n: int) -> None:
        """Set the row count; new rows are empty, dropped rows are cleared."""
        if n > self._capacity:
            self._capacity = max(n, int(self._capacity * 1.5) + 16)
            for col in self._columns.values():
                col.reserve(self._capacity)
        if n < self._n:
            for col in self._columns.values():
                col.clear(slice(n, self._n))
        self._n = n

    def set_row(self, row: int, metadata: Mapping[str, object], *, fresh: bool = False) -> None:
        """Replace the metadata of ``row`` (which must be ``< len(self)``).

        ``fresh=True`` skips clearing: only for rows added by :meth:`resize` and not set since.
        """
        if not 0 <= row < self._n:
            raise IndexError(row)
        if not fresh:
            for key, existing in self._columns.items():
                if key not in metadata:
                    existing.clear(row)
        for key, value in metadata.items():
            if key in self._non_filterable:
                continue
            col = self._columns.get(key)
            if col is None:
                col = self._columns[key] = _Column(self._capacity)
            col.set(row, value, self.vocab, fresh=fresh)

    def move_rows(
        self, src: Sequence[int] | npt.NDArray[np.intp], dst: Sequence[int] | npt.NDArray[np.intp]
    ) -> None:
        """Copy rows ``src[i]`` onto ``dst[i]`` (used to compact after deletes)."""
        s = np.asarray(src, dtype=np.intp)
        d = np.asarray(dst, dtype=np.intp)
        for col in self._columns.values():
            col.move(s, d)
