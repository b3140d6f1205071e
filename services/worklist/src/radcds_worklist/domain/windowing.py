"""Which window the key image is shown in (DICOM PS3.3 C.11.2.1.2 window center and width, in modality units).

A head CT is read in the brain window (center 40 HU, width 80 HU); a chest CT's key image in the mediastinal
window (40, 400); radiographs (CR, DX) use the window or VOI LUT their modality wrote into the image (the chest
window the modality chose), so no window is forced on them. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_PARTS = frozenset({"HEAD", "BRAIN", "SKULL"})


@dataclass(frozen=True, slots=True)
class Window:
    """A linear VOI window (PS3.3 C.11.2.1.2.1) and its name."""

    center: float
    width: float
    name: str

    @property
    def query(self) -> str:
        """The WADO-RS rendered ``window`` parameter (PS3.18 §8.3.5.1.3): ``center,width,linear``."""
        return f"{self.center:g},{self.width:g},linear"


BRAIN = Window(40, 80, "brain")
MEDIASTINUM = Window(40, 400, "mediastinum")


def window_for(modality: str, body_part: str, *, model: str = "") -> Window | None:
    """The window to render a key image in, or ``None`` for the image's own VOI."""
    if modality.upper() != "CT":
        return None
    if body_part.upper() in HEAD_PARTS or model == "head_ct_hyperdensity":
        return BRAIN
    return MEDIASTINUM
