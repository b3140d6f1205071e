"""WCAG 2.2 AA (success criterion 1.4.3): every text/background pair of the worklist's palette has a contrast
ratio of at least 4.5:1, computed from the custom properties in static/worklist.css (WCAG relative luminance)."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

CSS = files("radcds_worklist").joinpath("static/worklist.css").read_text(encoding="utf-8")
PALETTE = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", CSS))
PAIRS = [
    ("text", "bg"),
    ("text", "panel"),
    ("muted", "bg"),
    ("muted", "panel"),
    ("link", "bg"),
    ("link", "panel"),
    ("critical-text", "critical-bg"),
    ("stat-text", "stat-bg"),
    ("routine-text", "routine-bg"),
    ("ok-text", "bg"),
    ("ok-text", "panel"),
    ("warn-text", "bg"),
    ("warn-text", "panel"),
    ("primary-text", "primary-bg"),
    ("text", "critical-row"),
    ("muted", "critical-row"),
    ("link", "critical-row"),
    ("warn-text", "critical-row"),
]


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_luminance_formula_gives_the_known_black_on_white_ratio():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_palette_pair_meets_wcag_aa_for_normal_text(text, background):
    assert contrast(PALETTE[text], PALETTE[background]) >= 4.5
