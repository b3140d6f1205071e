"""imaging's conversion of every element at ingest (``part10._decode_all``) against pydicom's own path.

``_decode_all`` converts most raw elements itself, the way ``Dataset.__getitem__`` does, to skip the lookups
``__getitem__`` repeats per element; these tests hold it to the same result as reading every element through
``Dataset.__getitem__`` (the oracle): the same elements, VRs, values and private creators, and the same refusals,
on every Part 10 file of pydicom's test data and on byte-level mutations of real instances.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.errors import InvalidDicomError

from radcds_imaging.adapters.part10 import DicomRejected, _decode_all


def _decode_with_pydicom(dataset: pydicom.Dataset) -> None:
    """The oracle: every element read through ``Dataset.__getitem__``, sequences' items too."""
    for tag in list(dataset.keys()):
        element = dataset[tag]
        if element.VR == "SQ":
            for item in element.value:
                _decode_with_pydicom(item)


def _tree(dataset: pydicom.Dataset) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for element in dataset._dict.values():
        # repr: a float value NaN (FL bytes can hold one) is the same value, though NaN != NaN
        value = [_tree(item) for item in element.value] if element.VR == "SQ" else repr(element.value)
        out.append((element.tag, element.VR, value, getattr(element, "private_creator", None)))
    return out


def _outcome(data: bytes, decode: Any) -> tuple[str, Any]:
    """("refused", None) when reading or converting fails, else ("read", the element tree)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
        except (InvalidDicomError, Exception):
            return ("unreadable", None)
        try:
            decode(ds.file_meta)
            decode(ds)
        except DicomRejected:
            return ("refused", None)
        except Exception:  # the oracle raises pydicom's own errors where _decode_all answers DicomRejected
            return ("refused", None)
        return ("read", _tree(ds))


#: pydicom's own test and character set files (installed with it: nothing is downloaded).
_PYDICOM_DATA = Path(pydicom.data.__file__).parent


def _part10_files() -> list[Path]:
    files = []
    for path in sorted([*_PYDICOM_DATA.glob("test_files/**/*"), *_PYDICOM_DATA.glob("charset_files/*")]):
        if path.is_file() and path.stat().st_size < 4_000_000:
            with path.open("rb") as fh:
                fh.seek(128)
                if fh.read(4) == b"DICM":
                    files.append(path)
    return files


PART10_FILES = _part10_files()


def test_pydicom_test_data_has_part10_files_with_sequences_private_elements_and_character_sets():
    assert len(PART10_FILES) > 50
    names = {p.name for p in PART10_FILES}
    assert {"CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "chrJapMulti.dcm", "priv_SQ.dcm"} <= names


@pytest.mark.parametrize("path", PART10_FILES, ids=lambda p: p.name)
def test_every_pydicom_test_file_is_converted_exactly_as_pydicom_converts_it(path: Path):
    data = path.read_bytes()
    assert _outcome(data, _decode_all) == _outcome(data, _decode_with_pydicom)


_MUTATED = [
    _PYDICOM_DATA / folder / name
    for folder, name in (
        ("test_files", "CT_small.dcm"),
        ("test_files", "rtplan.dcm"),
        ("test_files", "nested_priv_SQ.dcm"),
        ("charset_files", "chrJapMulti.dcm"),
    )
]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from(_MUTATED),
    flips=st.lists(st.tuples(st.integers(min_value=132, max_value=4000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_mutated_instances_are_refused_or_converted_exactly_as_pydicom_would(
    source: Path, flips: list[tuple[int, int]]
):
    data = bytearray(source.read_bytes())
    for offset, byte in flips:
        if offset < len(data):
            data[offset] = byte
    assert _outcome(bytes(data), _decode_all) == _outcome(bytes(data), _decode_with_pydicom)
