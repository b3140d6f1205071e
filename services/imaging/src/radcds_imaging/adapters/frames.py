"""WADO-RS Retrieve Frames (PS3.18 10.4.1.1.3, Table 10.3-2; media types 8.7.3).

``GET .../instances/{i}/frames/{list}`` answers ``multipart/related`` with one part per requested frame,
in the order asked (PS3.18 10.4.1.1.3: "frames/1,3,5").

* **Uncompressed** (``application/octet-stream``, PS3.18 8.7.3.3.2): the frame's native pixel bytes in
  Explicit VR Little Endian (1.2.840.10008.1.2.1, the media type's default transfer syntax, Table 8.7.3-5).
  A stored native frame is sliced out unchanged; a compressed stored frame is decoded by pydicom's
  pixel data plugins (pylibjpeg-libjpeg for JPEG and JPEG-LS, pylibjpeg-openjpeg or Pillow for JPEG 2000,
  pydicom for RLE). Decoded colour (YBR) comes back as RGB, Planar Configuration 0.
* **Compressed** (PS3.18 8.7.3.3.2, Table 8.7.3-5): the stored encapsulated frame as it is, when the
  client accepts the stored syntax: its media type (``image/jpeg``, ``image/jls``, ``image/jp2``,
  ``image/jpx``, ``image/jphc``, ``image/dicom-rle`` / ``image/x-dicom-rle``) with no ``transfer-syntax``
  (the media type's default syntax), with the stored syntax, or with ``transfer-syntax=*``. imaging never
  re-encodes into another compressed syntax.
* ``transfer-syntax=*`` on ``application/octet-stream`` (what OHIF sends) means "any syntax"
  (PS3.18 8.7.3.5.2): the stored frame is sent as it is, compressed ones labelled with their media type.
  So does ``type="*/*"`` (dicomweb-client's default); ``type="image/*"`` takes a compressed stored frame.

Each part carries ``Content-Type: <media type>; transfer-syntax=<UID>`` (PS3.18 8.7.3.5.2), so the
client knows how to decode it. What cannot be served answers 406 (PS3.18 8.7.5); a frame number past
Number of Frames answers 404; 0, a negative or a non-number answers 400.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pack_bits, pixel_array
from pydicom.uid import UID

from radcds.adapters.dicomweb.multipart import MediaRange, parse_accept

OCTET_STREAM = "application/octet-stream"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: Native syntaxes whose Pixel Data bytes are already Little Endian as pydicom reads them (Deflated is
#: inflated on reading).
_LITTLE_ENDIAN_NATIVE = frozenset({"1.2.840.10008.1.2", EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1.99"})
#: Most frames one request may name, so that a request cannot ask for an unbounded response.
MAX_FRAMES_PER_REQUEST = 4096

#: Compressed single-frame media types and their transfer syntaxes, default first (PS3.18 Table 8.7.3-5).
COMPRESSED_MEDIA_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    ),
    "image/jls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "image/x-jls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "image/jp2": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"),
    "image/jpx": ("1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"),
    "image/jphc": ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
    "image/dicom-rle": ("1.2.840.10008.1.2.5",),
    "image/x-dicom-rle": ("1.2.840.10008.1.2.5",),
}
#: The media type each compressed syntax is labelled with in a response part.
_LABEL: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


class FrameRequestError(ValueError):
    """The frame list is malformed (400)."""


class NoFramesError(LookupError):
    """The instance has no pixel data to take frames from (404)."""


@dataclass(frozen=True, slots=True)
class FrameRepresentation:
    """How the frames of one response are sent: the part media type and its transfer syntax."""

    media_type: str
    transfer_syntax_uid: str

    @property
    def compressed(self) -> bool:
        """True when the stored encapsulated frames are sent as they are."""
        return self.media_type != OCTET_STREAM

    @property
    def part_content_type(self) -> str:
        """``Content-Type`` of each part (PS3.18 8.7.3.5.2)."""
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax_uid}"


def parse_frame_list(text: str) -> list[int]:
    """``1,3,5`` as frame numbers (1-based, PS3.18 10.4.1.1.3); :class:`FrameRequestError` when malformed."""
    numbers: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            raise FrameRequestError(f"frame numbers must be positive integers separated by commas, not {item!r}")
        number = int(item)
        if number < 1:
            raise FrameRequestError("frame numbers start at 1")
        numbers.append(number)
    if len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise FrameRequestError(f"at most {MAX_FRAMES_PER_REQUEST} frames per request")
    return numbers


def is_compressed(transfer_syntax_uid: str) -> bool:
    """True for an encapsulated (compressed) transfer syntax (PS3.5 A.4)."""
    return bool(UID(transfer_syntax_uid).is_compressed)


def decodable(transfer_syntax_uid: str) -> bool:
    """Whether one of the installed pixel data plugins decodes this syntax."""
    if not is_compressed(transfer_syntax_uid):
        return True
    try:
        return bool(get_decoder(UID(transfer_syntax_uid)).is_available)
    except NotImplementedError:
        return False


def negotiate_frames(accept: str | None, stored_transfer_syntax: str) -> FrameRepresentation | None:
    """The representation to send for an Accept value (PS3.18 8.7.3, 8.7.5), or None (406).

    Without Accept, with ``*/*`` or with ``multipart/related`` and no ``type``, frames go uncompressed.
    """
    uncompressed = FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
    can_decode = decodable(stored_transfer_syntax)
    if not accept or not accept.strip():
        return uncompressed if can_decode else None
    for media_range in parse_accept(accept):
        choice = _choose(media_range, stored_transfer_syntax, can_decode)
        if choice is not None:
            return choice
    return None


def _choose(media_range: MediaRange, stored: str, can_decode: bool) -> FrameRepresentation | None:
    uncompressed = FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
    stored_compressed = is_compressed(stored)
    as_stored = FrameRepresentation(_LABEL[stored], stored) if stored in _LABEL else None
    if media_range.media_type == "*/*":
        return uncompressed if can_decode else as_stored
    if media_range.media_type != "multipart/related":
        return None
    part_type = media_range.params.get("type", OCTET_STREAM).lower()
    syntax = media_range.params.get("transfer-syntax")
    if part_type == OCTET_STREAM:
        if syntax in (None, EXPLICIT_VR_LITTLE_ENDIAN):
            return uncompressed if can_decode else None
        if syntax == "*":
            # Any syntax: the stored one as it is (PS3.18 8.7.3.5.2).
            return _stored_or_decoded(as_stored, stored_compressed, can_decode)
        return None
    if part_type == "*/*":
        # Any media type (dicomweb-client's default): the stored representation, as for transfer-syntax=*.
        if syntax in (None, "*") or syntax == stored:
            return _stored_or_decoded(as_stored, stored_compressed, can_decode)
        if syntax == EXPLICIT_VR_LITTLE_ENDIAN:
            return uncompressed if can_decode else None
        return None
    if part_type == "image/*":
        if syntax in (None, "*", stored) and as_stored is not None:
            return as_stored
        return None
    syntaxes = COMPRESSED_MEDIA_TYPES.get(part_type)
    if syntaxes is None or stored not in syntaxes:
        return None
    if syntax is None and stored != syntaxes[0]:
        # Without transfer-syntax the media type's default syntax is meant (Table 8.7.3-5).
        return None
    if syntax not in (None, "*", stored):
        return None
    return FrameRepresentation(part_type, stored)


def _stored_or_decoded(
    as_stored: FrameRepresentation | None, stored_compressed: bool, can_decode: bool
) -> FrameRepresentation | None:
    """The stored compressed frames when they have a frame media type, else uncompressed if decodable."""
    if stored_compressed and as_stored is not None:
        return as_stored
    return FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN) if can_decode else None


def read_frames(data: bytes, numbers: list[int], representation: FrameRepresentation) -> list[bytes]:
    """The bytes of frames ``numbers`` (1-based) of a Part 10 file in ``representation``.

    Raises :class:`NoFramesError` when the instance has no Pixel Data and ``IndexError`` for a frame
    past Number of Frames.
    """
    ds = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise NoFramesError("the instance has no Pixel Data")
    total = _number_of_frames(ds)
    past = [n for n in numbers if n > total]
    if past:
        raise IndexError(f"frame {past[0]} past Number of Frames ({total})")
    stored = str(ds.file_meta.TransferSyntaxUID)
    if representation.compressed:
        return [_encapsulated_frame(ds, n - 1, total) for n in numbers]
    if not is_compressed(stored) and stored in _LITTLE_ENDIAN_NATIVE and int(ds.BitsAllocated) % 8 == 0:
        length = _native_frame_length(ds)
        pixels = ds.PixelData
        return [bytes(pixels[(n - 1) * length : n * length]) for n in numbers]
    return [_decoded_frame(data, ds, n - 1) for n in numbers]


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _native_frame_length(ds: Dataset) -> int:
    """Bytes of one native frame (PS3.5 8.1.1): Rows x Columns x Samples per Pixel x Bits Allocated / 8."""
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated) // 8


def _encapsulated_frame(ds: Dataset, index: int, total: int) -> bytes:
    """One encapsulated frame (PS3.5 A.4), using the Basic or Extended Offset Table when present."""
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    return get_frame(ds.PixelData, index, number_of_frames=total, extended_offsets=extended)


def _decoded_frame(data: bytes, ds: Dataset, index: int) -> bytes:
    """One frame decoded to native Little Endian bytes (colour as RGB, Planar Configuration 0)."""
    arr = pixel_array(io.BytesIO(data), index=index)
    if int(ds.BitsAllocated) == 1:
        return pack_bits(arr)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).tobytes()


def stored_transfer_syntax(data: bytes) -> str:
    """The Transfer Syntax UID (0002,0010) a Part 10 instance is stored in ("" when its file meta has none)."""
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(meta.file_meta.get("TransferSyntaxUID", ""))
