"""Destinations: RADCDS_REPORTING_MLLP_DESTINATIONS plus a TOML/JSON options file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radcds_reporting.adapters.hl7v2.config import load_destinations, parse_destination_list
from radcds_reporting.adapters.hl7v2.oru import TextLayout

# Written for this test: defaults plus one destination that wants one FT OBX.
OPTIONS_TOML = """
[defaults]
ack_timeout_s = 5
max_attempts = 3

[destinations."mirth.example:6661"]
text_layout = "formatted-text"
receiving_application = "MIRTH"
"""


def test_destination_list_of_host_ports_returns_pairs() -> None:
    assert parse_destination_list("a.example:6661, 10.0.0.2:2575,") == [("a.example", 6661), ("10.0.0.2", 2575)]


@pytest.mark.parametrize("value", ["nohost", "a:b", "a:70000", "a:1,a:1"])
def test_malformed_destination_list_raises(value: str) -> None:
    with pytest.raises(ValueError, match="MLLP destination"):
        parse_destination_list(value)


def test_toml_options_apply_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mllp.toml"
    path.write_text(OPTIONS_TOML)
    mirth, other = load_destinations("mirth.example:6661,rhapsody.example:7000", path)
    assert mirth.options.text_layout is TextLayout.FORMATTED_TEXT
    assert mirth.options.header().receiving_application == "MIRTH"
    assert mirth.options.ack_timeout_s == 5 and other.options.ack_timeout_s == 5
    assert other.options.text_layout is TextLayout.OBX_PER_LINE
    assert other.options.retry_policy().max_attempts == 3
    assert other.key == "rhapsody.example:7000"


def test_json_options_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "mllp.json"
    path.write_text(json.dumps({"destinations": {"h:1": {"text_layout": "repeating-obx5"}}}))
    [dest] = load_destinations("h:1", path)
    assert dest.options.text_layout is TextLayout.REPEATING_OBX5


def test_options_for_unlisted_destination_raise(tmp_path: Path) -> None:
    path = tmp_path / "mllp.json"
    path.write_text(json.dumps({"destinations": {"typo:1": {}}}))
    with pytest.raises(ValueError, match="not listed"):
        load_destinations("h:1", path)


def test_unknown_option_raises(tmp_path: Path) -> None:
    path = tmp_path / "mllp.json"
    path.write_text(json.dumps({"defaults": {"txt_layout": "x"}}))
    with pytest.raises(ValueError, match="h:1"):
        load_destinations("h:1", path)
