"""The AI overlay: the chest radiograph's cardiac and thoracic widths as lines, the head CT's region outlined (or
its centre marked), all on the source grid (x = column, y = row); the window each key image is shown in."""

from __future__ import annotations

from radcds_worklist.domain.overlay import Line, Marker, Outline, build_overlay
from radcds_worklist.domain.windowing import BRAIN, window_for

CHEST = {
    "cardiothoracic-ratio": (0.4871, "{ratio}"),
    "cardiac-width": (141.6, "mm"),
    "thoracic-width": (290.7, "mm"),
}


def test_chest_points_become_the_cardiac_and_thoracic_width_lines_with_their_measurements():
    overlay = build_overlay(
        model="chest_ctr",
        points=[(1000, 700), (1200, 1200), (900, 300), (900, 1600)],
        measurements=CHEST,
        columns=1841,
        rows=1955,
    )
    assert overlay is not None
    left, right, cardiac, thoracic = overlay.shapes
    assert (left, right) == (Marker(700, 1000, "", "cardiac"), Marker(1200, 1200, "", "cardiac"))
    assert cardiac == Line(700, 1100, 1200, 1100, "cardiac width 142 mm", "cardiac")
    assert thoracic == Line(300, 900, 1600, 900, "thoracic width 291 mm", "thoracic")
    assert overlay.caption == "Cardiothoracic ratio 0.49"
    assert overlay.view_box == "0 0 1841 1955"


def test_head_ct_outline_after_the_centre_is_drawn_as_a_closed_outline():
    overlay = build_overlay(
        model="head_ct_hyperdensity",
        points=[(260, 250), (253, 243), (253, 257), (267, 257), (267, 243)],
        measurements={
            "hyperdense-largest-region-area": (154.1, "mm2"),
            "hyperdense-region-count": (1, "{count}"),
            "hyperdense-region-area": (154.1, "mm2"),
        },
        columns=512,
        rows=512,
    )
    assert overlay is not None
    (outline,) = overlay.shapes
    assert isinstance(outline, Outline)
    assert outline.points == ((243, 253), (257, 253), (257, 267), (243, 267))
    assert outline.svg_points == "243.0,253.0 257.0,253.0 257.0,267.0 243.0,267.0"
    assert outline.label == "largest region 154 mm²"
    assert overlay.caption == "1 acute-blood-density region(s), total area 154 mm²"


def test_head_ct_with_only_a_centre_marks_it():
    overlay = build_overlay(model="head_ct_hyperdensity", points=[(260, 250)], measurements={}, columns=512, rows=512)
    assert overlay is not None
    assert overlay.shapes == (Marker(250, 260, "largest region", "region"),)


def test_no_location_means_no_overlay():
    assert build_overlay(model="chest_ctr", points=[], measurements=CHEST, columns=10, rows=10) is None


def test_head_ct_is_shown_in_the_brain_window_and_radiographs_in_their_own():
    assert window_for("CT", "HEAD") == BRAIN
    assert BRAIN.query == "40,80,linear"
    assert window_for("CT", "", model="head_ct_hyperdensity") == BRAIN
    assert window_for("CR", "CHEST") is None
    assert window_for("CT", "CHEST").name == "mediastinum"
