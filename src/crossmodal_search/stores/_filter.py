"""The Amazon S3 Vectors metadata filter language, validated and evaluated locally.

One implementation serves every store: ``S3VectorsStore`` validates filters with it before a
request is sent, its test fake and ``LocalVectorStore`` evaluate them with it. Two evaluators
share one compiled form: :func:`matches` tests one metadata mapping, :func:`filter_mask`
evaluates a filter over :class:`MetadataColumns` (columnar, dictionary-encoded metadata) with
numpy, a few milliseconds per condition over a million records, and
:meth:`CompiledFilter.select` returns the rows it keeps, planned by the estimate of the
columns' per-key indexes (``_colindex.py``): a selective filter is served from them, with the
rest of it evaluated on the candidate rows only. :class:`FilterCache` keeps the compiled form
of the filters a store was recently given.

Grammar::

    filter    := {clause, ...}                     (non-empty; several clauses are ANDed)
    clause    := "$and": [filter, ...]  |  "$or": [filter, ...]      (non-empty lists)
               | field: scalar                     (shorthand for {"$eq": scalar})
               | field: {op: operand, ...}         (non-empty; several operators are ANDed)
    op        := $eq $ne (scalar)  $gt $gte $lt $lte (number)
               | $in $nin (non-empty list of scalars)  $exists (bool)
               | $startsWith (non-empty string; ENHANCED indexes only)
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
* ``$startsWith`` is a case-sensitive prefix match on string values (any element of a list);
  numbers and booleans never match. S3 Vectors takes it on ``ENHANCED`` indexes only (and on a
  ``CLASSIC`` index queried with ``queryMode="ENHANCED"``); pass ``index_mode="CLASSIC"`` to
  refuse it as the service would.
* Size. An ``ENHANCED`` index takes at most 100 constraints per filter, counting each operator
  (shorthand ``field: value`` is one ``$eq``); ``CompiledFilter.constraints`` is the count.

Invalid filters raise :class:`~crossmodal_search.errors.InvalidFilterError`: an empty filter or
operator object, an unknown operator, an operator in the wrong place (``$and`` inside a field,
``$eq`` at the top level), a nested object as a value, a bare list as a value, a wrong operand
type (``$gt`` on a string, ``$in`` that is not a non-empty list of scalars, ``$exists`` that is not
a bool, ``$startsWith`` that is not a non-empty string, ``$and``/``$or`` that is not a non-empty
list of objects), None/NaN/infinite operands, any field declared non-filterable for the index,
``$startsWith`` or more than 100 constraints where the index mode does not allow them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import Filter
from crossmodal_search.errors import InvalidFilterError
from crossmodal_search.stores._colindex import sorted_unique
from crossmodal_search.stores._columns import (
    NUM_OPS,
    BoolArray,
    Kind,
    MetadataColumns,
    Operand,
    classify,
    elements,
)

__all__ = [
    "FIELD_OPERATORS",
    "LOGICAL_OPERATORS",
    "MAX_ENHANCED_FILTER_CONSTRAINTS",
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
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$startsWith"}
)
#: Filter constraints (operators) an ENHANCED index takes per query.
MAX_ENHANCED_FILTER_CONSTRAINTS = 100
_ORDERING = ("$gt", "$gte", "$lt", "$lte")
Rows: TypeAlias = npt.NDArray[np.intp]
_MAX_DEPTH = 64


# --------------------------------------------------------------------------- compiled form


class _Node:
    def matches(self, metadata: Mapping[str, object]) -> bool:
        raise NotImplementedError

    def mask(self, columns: MetadataColumns) -> BoolArray:
        raise NotImplementedError

    def estimate(self, columns: MetadataColumns) -> int:
        """About how many rows match, from the key indexes (the row count when unknown)."""
        raise NotImplementedError

    def rows(self, columns: MetadataColumns, within: Rows | None) -> Rows:
        """The matching rows, ascending: of all rows (a selective node: from the key indexes)
        or of the ascending rows ``within`` (evaluated on those rows only)."""
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

    def estimate(self, columns: MetadataColumns) -> int:
        return min(child.estimate(columns) for child in self.children)

    def rows(self, columns: MetadataColumns, within: Rows | None) -> Rows:
        # The most selective child first; each next one is evaluated on the rows left.
        ranked = sorted(self.children, key=lambda child: child.estimate(columns))
        out = ranked[0].rows(columns, within)
        for child in ranked[1:]:
            if not out.size:
                break
            out = child.rows(columns, out)
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

    def estimate(self, columns: MetadataColumns) -> int:
        return min(len(columns), sum(child.estimate(columns) for child in self.children))

    def rows(self, columns: MetadataColumns, within: Rows | None) -> Rows:
        parts = [child.rows(columns, within) for child in self.children]
        return sorted_unique(np.concatenate(parts))


@dataclass(frozen=True, slots=True)
class _Cond(_Node):
    """One field condition; ``negate`` turns the positive $eq/$in into $ne/$nin."""

    field: str
    op: str  # "$eq", "$in", "$gt", "$gte", "$lt", "$lte", "$exists", "$startsWith"
    operand: Operand
    negate: bool = False

    def _element_matches(self, value: object) -> bool:
        kv = classify(value)
        if kv is None:
            return False
        if self.op == "$startsWith":
            assert isinstance(self.operand, str)
            return kv[0] == "s" and str(kv[1]).startswith(self.operand)
        if self.op in NUM_OPS:
            return kv[0] == "n" and bool(NUM_OPS[self.op](kv[1], self.operand))
        assert isinstance(self.operand, tuple)
        return kv in self.operand

    def matches(self, metadata: Mapping[str, object]) -> bool:
        if self.op == "$exists":
            return (self.field in metadata) == self.operand
        if self.field not in metadata:
            hit = False
        else:
            hit = any(self._element_matches(v) for v in elements(metadata[self.field]))
        return hit != self.negate

    def mask(self, columns: MetadataColumns) -> BoolArray:
        n = len(columns)
        col = columns.column(self.field)
        if self.op == "$exists":
            present = col.present[:n].copy() if col is not None else np.zeros(n, dtype=bool)
            return present if self.operand else ~present
        hit = (
            np.zeros(n, dtype=bool)
            if col is None
            else col.any_element(self.op, self.operand, columns.vocab, n)
        )
        return ~hit if self.negate else hit

    def _positive(self) -> bool:
        """Whether the condition keeps rows holding something ($exists: false and the
        negations keep rows lacking it, which no index lists)."""
        return self.operand is True if self.op == "$exists" else not self.negate

    def estimate(self, columns: MetadataColumns) -> int:
        n = len(columns)
        if columns.column(self.field) is None:
            return 0 if self._positive() else n
        index = columns.key_index(self.field)
        if index is None:
            return n
        hit = index.estimate(self.op, self.operand, columns.vocab)
        # A negation keeps at least the rows the positive form cannot.
        return min(n, hit) if self._positive() else n - min(n, hit)

    def rows(self, columns: MetadataColumns, within: Rows | None) -> Rows:
        col = columns.column(self.field)
        if within is None:
            index = None if col is None else columns.key_index(self.field)
            if col is None or index is None or not self._positive():
                return np.flatnonzero(self.mask(columns))
            return index.lookup(col, self.op, self.operand, columns.vocab, len(columns))
        if col is None:
            return within if not self._positive() else within[:0]
        if self.op == "$exists":
            hit = col.present[within]
            return within[hit if self.operand else ~hit]
        hit = col.any_element(self.op, self.operand, columns.vocab, within)
        return within[~hit if self.negate else hit]


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A validated filter, ready to evaluate many times. Build with :func:`compile_filter`."""

    _root: _Node
    fields: frozenset[str]
    #: Operators in the filter, as ENHANCED indexes count them against their limit of 100.
    constraints: int = 0

    def matches(self, metadata: Mapping[str, object]) -> bool:
        """Whether one record's metadata satisfies the filter."""
        return self._root.matches(metadata)

    def mask(self, columns: MetadataColumns) -> BoolArray:
        """Boolean mask over the rows of ``columns`` (length ``len(columns)``)."""
        out = self._root.mask(columns)
        return out if out.flags.writeable else out.copy()

    def select(self, columns: MetadataColumns, fraction: float) -> Rows:
        """The ascending rows of ``columns`` that satisfy the filter.

        Planned by the estimate the key indexes give before anything is evaluated: a filter
        expected to keep at most ``fraction`` of the rows gathers its candidates from the
        indexes (the rest of its conditions evaluated on those rows only); a broader one, or
        one whose keys have no index yet, is evaluated over every row.
        """
        columns.note_use(self.fields)
        n = len(columns)
        if self._root.estimate(columns) <= n * fraction:
            return self._root.rows(columns, None)
        return np.flatnonzero(self._root.mask(columns))


# --------------------------------------------------------------------------- validation


def _fail(message: str) -> InvalidFilterError:
    return InvalidFilterError(message)


def _scalar_operand(op: str, value: object, path: str) -> tuple[Kind, bool | float | str]:
    kv = classify(value)
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
            kv = classify(operand)
            if kv is None or kv[0] != "n" or not math.isfinite(float(kv[1])):
                raise _fail(f"{where}: {op} takes a finite number, got {operand!r}")
            conds.append(_Cond(field, op, float(kv[1])))
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list | tuple) or not operand:
                raise _fail(f"{where}: {op} takes a non-empty list of scalars, got {operand!r}")
            values = tuple(dict.fromkeys(_scalar_operand(op, v, where) for v in operand))
            conds.append(_Cond(field, "$in", values, negate=op == "$nin"))
        elif op == "$startsWith":
            if not isinstance(operand, str) or not operand:
                raise _fail(f"{where}: $startsWith takes a non-empty string, got {operand!r}")
            conds.append(_Cond(field, op, operand))
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


def _count(node: _Node) -> int:
    if isinstance(node, _And | _Or):
        return sum(_count(child) for child in node.children)
    return 1


def compile_filter(
    filter: Filter,
    *,
    non_filterable: Iterable[str] = (),
    index_mode: Literal["CLASSIC", "ENHANCED"] = "ENHANCED",
) -> CompiledFilter:
    """Validate ``filter`` for an index in ``index_mode`` and compile it for repeated evaluation.

    Raises:
        InvalidFilterError: The filter is outside the language (see the module docstring).
    """
    fields: set[str] = set()
    root = _compile(filter, "", frozenset(non_filterable), fields, 0)
    compiled = CompiledFilter(root, frozenset(fields), _count(root))
    if index_mode == "CLASSIC":
        if _uses_starts_with(root):
            raise _fail(
                "$startsWith needs an ENHANCED index; this index is CLASSIC (move it with "
                "S3VectorsStore.update_index_mode('ENHANCED'), in place and free)"
            )
    elif compiled.constraints > MAX_ENHANCED_FILTER_CONSTRAINTS:
        raise _fail(
            f"the filter has {compiled.constraints} constraints; an ENHANCED index takes at "
            f"most {MAX_ENHANCED_FILTER_CONSTRAINTS} per query (a long $in list counts as one)"
        )
    return compiled


def _uses_starts_with(node: _Node) -> bool:
    if isinstance(node, _And | _Or):
        return any(_uses_starts_with(child) for child in node.children)
    return isinstance(node, _Cond) and node.op == "$startsWith"


class FilterCache:
    """The compiled form of the filters a store was recently queried with (least recently
    used dropped first), so a repeated filter is not validated and compiled again.

    Filters are told apart by value *and type* (``1``, ``1.0`` and ``True`` are different
    filters); one holding anything but dicts, lists, tuples, strings, numbers and booleans is
    compiled every time. The key is a frozen copy: changing a filter after the query does not
    change what it meant.
    """

    def __init__(
        self, non_filterable: Iterable[str] = frozenset(), *, max_entries: int = 64
    ) -> None:
        self._non_filterable = frozenset(non_filterable)
        self._max = max_entries
        self._entries: OrderedDict[object, CompiledFilter] = OrderedDict()

    def compile(self, filter: Filter) -> CompiledFilter:
        """:func:`compile_filter` for an ENHANCED index with this cache's non-filterable keys."""
        key = _frozen(filter, 0)
        if key is not None:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        compiled = compile_filter(filter, non_filterable=self._non_filterable)
        if key is not None:
            self._entries[key] = compiled
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return compiled


_SCALARS = (str, int, float, bool)


def _frozen(value: object, depth: int) -> object | None:
    """A hashable copy of a filter keeping every value's type, or None (not cacheable)."""
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if depth > 2 * _MAX_DEPTH + 2:
        return None
    if kind is dict:
        assert isinstance(value, dict)
        items = []
        for k, v in value.items():
            frozen = _frozen(v, depth + 1)
            if frozen is None or type(k) is not str:
                return None
            items.append((k, frozen))
        return (dict, tuple(items))
    if kind is list or kind is tuple:
        assert isinstance(value, list | tuple)
        parts = []
        for v in value:
            frozen = _frozen(v, depth + 1)
            if frozen is None:
                return None
            parts.append(frozen)
        return (kind, tuple(parts))
    return None


def validate_filter(
    filter: Filter,
    *,
    non_filterable: Iterable[str] = frozenset(),
    index_mode: Literal["CLASSIC", "ENHANCED"] = "ENHANCED",
) -> None:
    """Raise :class:`~crossmodal_search.errors.InvalidFilterError` unless ``filter`` is valid.

    Example:
        >>> validate_filter({"genre": "drama", "year": {"$gte": 2020}})
        >>> validate_filter({"year": {"$gt": "2020"}})
        Traceback (most recent call last):
        ...
        crossmodal_search.errors.InvalidFilterError: year.$gt: $gt takes a finite number, ...
    """
    compile_filter(filter, non_filterable=non_filterable, index_mode=index_mode)


def normalize_filter(
    filter: Filter,
    *,
    non_filterable: Iterable[str] = frozenset(),
    index_mode: Literal["CLASSIC", "ENHANCED"] = "ENHANCED",
) -> Any:
    """Validate ``filter`` and return a plain-JSON copy (numpy scalars become Python values).

    The structure is kept as written (shorthand stays shorthand), ready for boto3, which rejects
    numpy scalars.
    """
    compile_filter(filter, non_filterable=non_filterable, index_mode=index_mode)
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
