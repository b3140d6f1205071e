"""One declaration per event payload: the JSON codec and the JSON Schema (draft-07) are both derived from it.

A payload is declared as a frozen dataclass. Its type hints say the JSON shape, ``typing.Annotated`` markers
defined here add what the hints cannot:

- ``str``, ``int``, ``float``, ``bool`` are JSON strings, integers, numbers and booleans; ``tuple[X, ...]`` an array
  of ``X``; a nested dataclass an object that admits no other property; ``dict[str, Any]`` an open object (a FHIR
  resource, see :func:`fhir_resource`); ``X | None`` a property that is left out when ``None``.
- keys are the field names in camelCase (:class:`Key` overrides one); the order of the fields is the order of the
  keys in the JSON text.
- a field without a default is ``required``; one with a default is optional and decodes to its default when
  absent. It is written always, unless marked :data:`OMIT_EMPTY` (then it is left out while it has its default).
- a :class:`Rule` adds validation keywords (JSON Schema Validation draft-07, section 6: ``pattern``,
  ``maxLength``, ``enum``, …) or an annotation (section 10: ``description``); :data:`SHOW_DEFAULT` writes the
  field's default as the ``default`` annotation.
- :class:`As` declares a field whose domain type differs from its wire shape by a pair of typed conversions.

Standard library only: the domain stays free of infrastructure.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

D = TypeVar("D")
W = TypeVar("W")

#: The JSON Schema dialect of every payload schema.
DRAFT_07 = "http://json-schema.org/draft-07/schema#"


@dataclass(frozen=True, slots=True)
class Rule:
    """JSON Schema keywords that constrain or annotate one value (JSON Schema Validation draft-07, 6 and 10).

    Rules combine with ``&``; an ``enum`` rule replaces the value's ``type`` (the enumeration says it all).
    """

    keywords: tuple[tuple[str, Any], ...]

    def __and__(self, other: Rule) -> Rule:
        return Rule(self.keywords + other.keywords)

    def apply(self, node: dict[str, Any]) -> None:
        """Add the keywords to the schema ``node``."""
        for name, value in self.keywords:
            if name == "enum":
                node.pop("type", None)
            node[name] = list(value) if isinstance(value, tuple) else value


def pattern(regex: str) -> Rule:
    """``pattern``: an ECMA 262 regular expression the string matches (draft-07 validation, 6.3.3)."""
    re.compile(regex)
    return Rule((("pattern", regex),))


def length(*, min: int | None = None, max: int | None = None) -> Rule:
    """``minLength`` / ``maxLength`` of a string (draft-07 validation, 6.3.1-2)."""
    return Rule(tuple((k, v) for k, v in (("minLength", min), ("maxLength", max)) if v is not None))


def max_items(n: int) -> Rule:
    """``maxItems`` of an array (draft-07 validation, 6.4.1)."""
    return Rule((("maxItems", n),))


def minimum(n: float, *, exclusive: bool = False) -> Rule:
    """``minimum`` (or ``exclusiveMinimum``) of a number (draft-07 validation, 6.2.4-5)."""
    return Rule((("exclusiveMinimum" if exclusive else "minimum", n),))


def fmt(name: str) -> Rule:
    """``format`` (draft-07 validation, 7.3): ``date-time``, ``uri``, …"""
    return Rule((("format", name),))


def one_of(*values: str) -> Rule:
    """``enum``: the value is one of ``values`` (draft-07 validation, 6.1.2)."""
    if not values:
        raise ValueError("an enumeration needs at least one value")
    return Rule((("enum", values),))


def doc(text: str) -> Rule:
    """``description`` annotation (draft-07 validation, 10.1)."""
    return Rule((("description", text),))


def fhir_resource(resource_type: str, *, required: tuple[str, ...] = ("resourceType",)) -> Rule:
    """An open object that is a FHIR R4 resource of ``resource_type`` (FHIR R4 JSON, 2.6.2: ``resourceType``)."""
    return Rule(
        (
            ("type", "object"),
            ("required", required),
            ("properties", {"resourceType": {"const": resource_type}}),
        )
    )


@dataclass(frozen=True, slots=True)
class Key:
    """The JSON key of a field when it is not the field name in camelCase."""

    name: str


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str


#: The field is optional and left out of the JSON while it has its default (absent, it decodes to the default); a
#: field without a default then has the empty value of its type as default ("", 0, False, (), None).
OMIT_EMPTY = _Flag("omit-empty")
#: The schema states the field's default as the ``default`` annotation (draft-07 validation, 10.2).
SHOW_DEFAULT = _Flag("show-default")


@dataclass(frozen=True, slots=True)
class As(Generic[D, W]):
    """A field whose domain type ``D`` travels as the declared payload type ``W`` (a dataclass)."""

    wire: type[W]
    encode: Callable[[D], W]
    decode: Callable[[W], D]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str
    hint: Any  # the type without None and without Annotated
    rules: tuple[Rule, ...]
    convert: As[Any, Any] | None
    required: bool
    default: Any
    omit_empty: bool
    show_default: bool
    #: JSON value -> field value and back, built once from the hint (and the conversion) when the fields are read.
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any]


_MISSING = object()


def camel_case(name: str) -> str:
    """``study_instance_uid`` → ``studyInstanceUid``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _strip(hint: Any) -> tuple[Any, tuple[Any, ...], bool]:
    """(type, Annotated metadata, optional) of a type hint: ``Annotated[X | None, m]`` or ``Annotated[X, m] | None``."""
    metadata: tuple[Any, ...] = ()
    optional = False
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint, *extra = typing.get_args(hint)
            metadata += tuple(extra)
        elif origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(args) != 1:
                raise TypeError(f"only X | None unions travel as JSON, not {hint}")
            optional = True
            hint = args[0]
        else:
            return hint, metadata, optional


#: Each declaration's fields, read once (type hints are evaluated on first use, not at import time).
_DECLARED: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    found = _DECLARED.get(cls)
    if found is None:
        found = _DECLARED[cls] = _read_fields(cls)
    return found


def _read_fields(cls: type) -> tuple[_Field, ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a payload declaration (a dataclass)")
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        hint, metadata, optional = _strip(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        elif OMIT_EMPTY in metadata:
            default = _empty(hint, optional)
        else:
            default = _MISSING
        keys = [m.name for m in metadata if isinstance(m, Key)]
        converts = [m for m in metadata if isinstance(m, As)]
        decode, encode = _value_codec(converts[0].wire if converts else hint)
        if converts:
            convert = converts[0]
            decode = _then(decode, convert.decode)
            encode = _then(convert.encode, encode)
        field = _Field(
            name=f.name,
            key=keys[0] if keys else camel_case(f.name),
            hint=hint,
            rules=tuple(m for m in metadata if isinstance(m, Rule)),
            convert=converts[0] if converts else None,
            required=default is _MISSING,
            default=default,
            omit_empty=OMIT_EMPTY in metadata,
            show_default=SHOW_DEFAULT in metadata,
            decode=decode,
            encode=encode,
        )
        if field.required and (field.omit_empty or field.show_default):
            raise TypeError(f"{cls.__name__}.{f.name}: SHOW_DEFAULT needs a default")
        out.append(field)
    return tuple(out)


def _identity(value: Any) -> Any:
    return value


def _then(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: second(first(value))


def _value_codec(hint: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(decode, encode) of one value of type ``hint``, worked out once per field instead of once per value."""
    hint, _, _ = _strip(hint)
    if hint in (bool, int, float):
        return hint, _identity
    if typing.get_origin(hint) is tuple:
        item_decode, item_encode = _value_codec(typing.get_args(hint)[0])
        if item_encode is _identity:
            return (lambda v: tuple(map(item_decode, v))), list
        return (lambda v: tuple(map(item_decode, v))), (lambda v: [item_encode(x) for x in v])
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        declared = hint
        return (lambda v: from_json(declared, v)), to_json
    return _identity, _identity


def _empty(hint: Any, optional: bool) -> Any:
    if optional:
        return None
    if typing.get_origin(hint) is tuple:
        return ()
    if hint in (str, int, float, bool):
        return hint()
    raise TypeError(f"{hint!r} has no empty value: give the field a default")


def mirror(domain: type[D], payload: type[W]) -> As[D, W]:
    """An :class:`As` between a domain dataclass and a payload declaration with the same field names.

    The payload declaration adds the wire rules; raises :class:`TypeError` when the field names differ.
    """
    names = tuple(f.name for f in dataclasses.fields(payload))  # type: ignore[arg-type]
    if set(names) != {f.name for f in dataclasses.fields(domain)}:  # type: ignore[arg-type]
        raise TypeError(f"{payload.__name__} does not mirror the fields of {domain.__name__}")

    def encode(value: D) -> W:
        return payload(**{n: getattr(value, n) for n in names})

    def decode(value: W) -> D:
        return domain(**{n: getattr(value, n) for n in names})

    return As(payload, encode, decode)


# ---- the codec ---------------------------------------------------------------------------------


def to_json(payload: object) -> dict[str, Any]:
    """The JSON object (``dict``) of a declared payload, keys in field order."""
    out: dict[str, Any] = {}
    for f in _fields(type(payload)):
        value = getattr(payload, f.name)
        if value is None or (f.omit_empty and value == f.default):
            continue
        out[f.key] = f.encode(value)
    return out


def from_json(cls: type[D], payload: Mapping[str, Any]) -> D:
    """Build the declared payload ``cls`` from a schema-validated JSON object."""
    kwargs: dict[str, Any] = {}
    for f in _fields(cls):
        if f.key not in payload:
            if f.required:
                raise KeyError(f"{cls.__name__}: {f.key} is required")
            kwargs[f.name] = f.default
            continue
        kwargs[f.name] = f.decode(payload[f.key])
    return cls(**kwargs)


# ---- the schema --------------------------------------------------------------------------------


def object_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a declared payload: an object of its fields that admits no other property."""
    node: dict[str, Any] = {"type": "object", "additionalProperties": False}
    required = [f.key for f in _fields(cls) if f.required]
    if required:
        node["required"] = required
    properties: dict[str, Any] = {}
    for f in _fields(cls):
        prop = _schema(f.convert.wire if f.convert is not None else f.hint, f.rules)
        if f.show_default:
            prop["default"] = f.encode(f.default)
        properties[f.key] = prop
    node["properties"] = properties
    return node


def _schema(hint: Any, rules: tuple[Rule, ...]) -> dict[str, Any]:
    hint, metadata, _ = _strip(hint)
    rules = rules + tuple(m for m in metadata if isinstance(m, Rule))
    node: dict[str, Any]
    if hint is str:
        node = {"type": "string"}
    elif hint is bool:
        node = {"type": "boolean"}
    elif hint is int:
        node = {"type": "integer"}
    elif hint is float:
        node = {"type": "number"}
    elif typing.get_origin(hint) is tuple:
        item, *rest = typing.get_args(hint)
        if rest != [Ellipsis]:
            raise TypeError(f"only tuple[X, ...] travels as a JSON array, not {hint}")
        node = {"type": "array", "items": _schema(item, ())}
    elif hint is dict or typing.get_origin(hint) is dict:
        node = {"type": "object"}
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        node = object_schema(hint)
    else:
        raise TypeError(f"{hint!r} has no JSON form")
    for rule in rules:
        rule.apply(node)
    return node


def schema_document(cls: type, *, schema_id: str, title: str, description: str) -> dict[str, Any]:
    """The complete payload schema (draft-07) of ``cls``, with its ``$id``, ``title`` and ``description``."""
    return {
        "$schema": DRAFT_07,
        "$id": schema_id,
        "title": title,
        "description": description,
        **object_schema(cls),
    }


def render(document: Mapping[str, Any]) -> str:
    """The text of a schema file: JSON indented by two spaces, non-ASCII kept, one final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
