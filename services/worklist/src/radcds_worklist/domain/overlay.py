"""The AI overlay drawn on the key image: lines, outlines and markers on the source image grid.

A finding's location arrives as (row, column) points on the key image's pixel grid (PS3.3 C.18.6.1.1, the
grid of Rows x Columns); the overlay is drawn in that same coordinate system (x = column, y = row), so the page
can lay it over the rendered image at any size with an SVG ``viewBox`` of ``0 0 Columns Rows``.

- ``chest_ctr`` gives four points: the left and right heart borders and the two ends of the widest internal
  thoracic width. The overlay marks both heart borders and draws the cardiac width (level, between the borders'
  columns) and the thoracic width as two lines, labelled with their measurements and the cardiothoracic ratio.
- ``head_ct_hyperdensity`` gives the centre of the largest acute-blood-density region, then (when the model
  gives one) its outline; the overlay outlines the region (or marks its centre) with the measured areas.

Pure: no image library. The radiologist can hide it (a wrong box can mislead a reader).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Point = tuple[float, float]

CHEST_CTR = "chest_ctr"
HEAD_CT = "head_ct_hyperdensity"


@dataclass(frozen=True, slots=True)
class Line:
    """A measured distance from (x1, y1) to (x2, y2)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    role: str


@dataclass(frozen=True, slots=True)
class Outline:
    """A closed outline through ``points`` (x, y)."""

    points: tuple[Point, ...]
    label: str
    role: str

    @property
    def svg_points(self) -> str:
        """The ``points`` attribute of an SVG ``<polygon>``."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass(frozen=True, slots=True)
class Marker:
    """A point of interest at (x, y)."""

    x: float
    y: float
    label: str
    role: str


Shape = Line | Outline | Marker


@dataclass(frozen=True, slots=True)
class Overlay:
    """What to draw over one key image (``columns`` x ``rows`` pixels), and a caption."""

    columns: int
    rows: int
    shapes: tuple[Shape, ...]
    caption: str

    @property
    def view_box(self) -> str:
        """The SVG ``viewBox`` that maps the image grid onto the rendered image."""
        return f"0 0 {self.columns} {self.rows}"

    @property
    def label_size(self) -> float:
        """A label height readable at any image size (about 2.5 % of the image height)."""
        return max(8.0, round(self.rows * 0.025, 1))


def _value(measurements: Mapping[str, tuple[float, str]], code: str) -> str:
    found = measurements.get(code)
    if found is None:
        return ""
    value, unit = found
    if unit == "{ratio}":
        return f"{value:.2f}"
    if unit == "{count}":
        return f"{value:.0f}"
    return f"{value:.0f} {unit.replace('mm2', 'mm²').replace('mm3', 'mm³')}"


def _xy(point: Sequence[float]) -> Point:
    row, column = point[0], point[1]
    return float(column), float(row)


def build_overlay(
    *,
    model: str,
    points: Sequence[Sequence[float]],
    measurements: Mapping[str, tuple[float, str]],
    columns: int,
    rows: int,
) -> Overlay | None:
    """The overlay of one finding, or ``None`` when the model gave no location to draw.

    ``measurements`` maps a measurement code (e.g. ``cardiac-width``) to (value, UCUM unit).
    """
    if not points or columns <= 0 or rows <= 0:
        return None
    shapes: list[Shape] = []
    if model == CHEST_CTR and len(points) >= 4:
        (lx, ly), (rx, ry), (tlx, tly), (trx, try_) = (_xy(p) for p in points[:4])
        # The cardiac width is horizontal: from the leftmost to the rightmost heart border, which usually lie on
        # different rows. Both borders are marked; the width is drawn level, midway between their rows.
        level = (ly + ry) / 2
        shapes.append(Marker(lx, ly, "", "cardiac"))
        shapes.append(Marker(rx, ry, "", "cardiac"))
        cardiac = f"cardiac width {_value(measurements, 'cardiac-width')}".strip()
        shapes.append(Line(lx, level, rx, level, cardiac, "cardiac"))
        shapes.append(
            Line(tlx, tly, trx, try_, f"thoracic width {_value(measurements, 'thoracic-width')}".strip(), "thoracic")
        )
        caption = f"Cardiothoracic ratio {_value(measurements, 'cardiothoracic-ratio') or 'not measured'}"
        return Overlay(columns, rows, tuple(shapes), caption)
    if model == HEAD_CT:
        cx, cy = _xy(points[0])
        outline = tuple(_xy(p) for p in points[1:])
        area = _value(measurements, "hyperdense-largest-region-area")
        if len(outline) >= 3:
            shapes.append(Outline(outline, f"largest region {area}".strip(), "region"))
        else:
            shapes.append(Marker(cx, cy, f"largest region {area}".strip(), "region"))
        regions = _value(measurements, "hyperdense-region-count")
        total = _value(measurements, "hyperdense-region-area")
        caption = f"{regions or 'no'} acute-blood-density region(s), total area {total or 'not measured'}"
        return Overlay(columns, rows, tuple(shapes), caption)
    shapes.extend(Marker(*_xy(p), "", "point") for p in points)
    return Overlay(columns, rows, tuple(shapes), "")
