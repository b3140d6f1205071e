"""Event payloads: one declaration gives the codec and the JSON Schema (radcds.domain.wire, issue #12)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import pytest

from radcds.domain import wire
from radcds.domain.events import EVENT_KINDS, PAYLOAD_CONTRACTS, PayloadContract
from radcds.domain.wire import OMIT_EMPTY, SHOW_DEFAULT, As, Key, doc, length, minimum, one_of

SCHEMAS = Path(__file__).resolve().parents[2] / "src" / "radcds" / "schemas"

#: Kinds whose schema is still written by hand (their payloads are built as dicts in a service); only shrinks.
HAND_WRITTEN = {
    "imaging-order-evaluated.v1.json",
    "fusion-assessment-produced.v1.json",
    "fusion-recommendation-changed.v1.json",
}


def _ids(contract: PayloadContract) -> str:
    return contract.kind.schema


@pytest.mark.parametrize("contract", PAYLOAD_CONTRACTS, ids=_ids)
def test_committed_schema_file_differing_from_its_declaration_fails(contract):
    committed = (SCHEMAS / contract.kind.schema).read_text(encoding="utf-8")
    assert committed == wire.render(contract.schema()), "run `make schemas` and commit the result"


@pytest.mark.parametrize("contract", PAYLOAD_CONTRACTS, ids=_ids)
def test_generated_schema_is_valid_draft_07_with_the_kinds_id(contract):
    schema = contract.schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$id"] == "https://radcds.example.org/schemas/" + contract.kind.schema


def test_every_event_kind_has_a_declaration_or_is_listed_as_hand_written():
    declared = {c.kind.schema for c in PAYLOAD_CONTRACTS}
    assert len(declared) == len(PAYLOAD_CONTRACTS)
    assert declared.isdisjoint(HAND_WRITTEN)
    assert declared | HAND_WRITTEN == {k.schema for k in EVENT_KINDS.values()}


# ---- the generic codec and schema, on small declarations -----------------------------------------


@dataclass(frozen=True, slots=True)
class _Code:
    code: Annotated[str, length(min=1)]
    system: str = ""


@dataclass(frozen=True, slots=True)
class _Pair:
    left: str
    right: str


def _pair_to_wire(pair: tuple[str, str]) -> _Pair:
    return _Pair(*pair)


def _pair_from_wire(pair: _Pair) -> tuple[str, str]:
    return (pair.left, pair.right)


#: A domain pair that travels as an object (the conversions are named functions: an annotation is evaluated late).
PAIR = As(_Pair, _pair_to_wire, _pair_from_wire)


@dataclass(frozen=True, slots=True)
class _Sample:
    sample_id: Annotated[str, one_of("a", "b")]
    count: Annotated[int, minimum(1)]
    ratio: float
    tags: tuple[Annotated[str, length(max=3)], ...]
    code: _Code | None = None
    note: Annotated[str, OMIT_EMPTY, doc("free text")] = ""
    flag: Annotated[bool, SHOW_DEFAULT] = False
    pair: Annotated[tuple[str, str] | None, PAIR, Key("both")] = None


def test_declared_payload_encodes_camel_case_keys_in_field_order_and_leaves_out_none_and_omitted_empties():
    out = wire.to_json(_Sample("a", 2, 0.5, ("x",)))
    assert list(out) == ["sampleId", "count", "ratio", "tags", "flag"]
    assert out == {"sampleId": "a", "count": 2, "ratio": 0.5, "tags": ["x"], "flag": False}


def test_declared_payload_with_every_field_set_round_trips():
    sample = _Sample("b", 3, 1.0, ("x", "y"), _Code("c1"), "n", True, ("l", "r"))
    out = wire.to_json(sample)
    assert out["code"] == {"code": "c1", "system": ""}
    assert out["both"] == {"left": "l", "right": "r"}
    assert wire.from_json(_Sample, out) == sample


def test_decoding_absent_optional_keys_gives_defaults_and_converts_json_numbers():
    sample = wire.from_json(_Sample, {"sampleId": "a", "count": 2.0, "ratio": 1, "tags": []})
    assert sample == _Sample("a", 2, 1.0, ())
    assert isinstance(sample.count, int) and isinstance(sample.ratio, float)


def test_decoding_without_a_required_key_raises_key_error():
    with pytest.raises(KeyError, match="ratio"):
        wire.from_json(_Sample, {"sampleId": "a", "count": 2, "tags": []})


def test_schema_requires_fields_without_default_and_admits_no_other_property():
    schema: dict[str, Any] = wire.object_schema(_Sample)
    assert schema["required"] == ["sampleId", "count", "ratio", "tags"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["sampleId"] == {"enum": ["a", "b"]}
    assert props["tags"] == {"type": "array", "items": {"type": "string", "maxLength": 3}}
    assert props["note"] == {"type": "string", "description": "free text"}
    assert props["flag"] == {"type": "boolean", "default": False}
    assert props["code"]["required"] == ["code"]
    assert props["both"]["required"] == ["left", "right"]


def test_schema_of_payload_encoded_by_the_codec_accepts_it_and_refuses_a_broken_one():
    validator = jsonschema.Draft7Validator(wire.object_schema(_Sample))
    good = wire.to_json(_Sample("b", 3, 1.0, ("x",), _Code("c1"), "n", True, ("l", "r")))
    assert validator.is_valid(good)
    assert not validator.is_valid(good | {"count": 0})
    assert not validator.is_valid(good | {"extra": 1})


def test_declaration_with_a_type_that_has_no_json_form_raises_type_error():
    @dataclass(frozen=True)
    class Bad:
        pair: tuple[str, str]

    with pytest.raises(TypeError, match="tuple"):
        wire.object_schema(Bad)


def test_omit_empty_field_without_default_is_optional_and_decodes_to_the_empty_value_of_its_type():
    @dataclass(frozen=True)
    class Note:
        text: Annotated[str, OMIT_EMPTY]
        tags: Annotated[tuple[str, ...], OMIT_EMPTY]

    assert wire.to_json(Note("", ())) == {}
    assert wire.from_json(Note, {}) == Note("", ())
    assert "required" not in wire.object_schema(Note)


def test_show_default_on_a_field_without_default_raises_type_error():
    @dataclass(frozen=True)
    class Bad:
        count: Annotated[int, SHOW_DEFAULT]

    with pytest.raises(TypeError, match="default"):
        wire.to_json(Bad(1))


def test_mirror_between_dataclasses_with_other_field_names_raises_type_error():
    with pytest.raises(TypeError, match="mirror"):
        wire.mirror(_Code, _Pair)
