"""CBF images (imgCIF with a byte-offset binary section) of detector counts.

A file holds one int32 array, byte-offset compressed, in the binary section Pilatus detectors
write (``X-Binary-*`` keys, ``Content-MD5``, 4095 bytes of padding).  Its text carries

* the Pilatus-style mini header in ``_array_data.header_contents`` (pixel size, wavelength,
  detector distance, beam centre in pixels from the corner of the first pixel, start angle and
  increment, exposure, sensor thickness, count cutoff), which DIALS's and XDS's miniCBF readers use;
* where the mini header cannot describe the detector (a detector that is tilted, rotated in
  its plane, mirrored, has more than one panel, or a spindle off the fast axis), the imgCIF
  categories of a full CBF (``diffrn_*``, ``axis``, ``array_structure_list_axis``, ...) from which
  CBFlib computes every pixel's position.

Every vector is in the imgCIF frame (see :mod:`pybragg.io.frames`), lengths in mm as imgCIF
wants them; the axes are the goniometer spindle, the detector's two-theta axis and the two
pixel axes of the element, whose offset places the corner of the first pixel.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import math
import os

import numpy as np

from .errors import FormatError, describe_path, read_bytes
from .frames import Setup, rotation_about

BINARY_START = b"\x0c\x1a\x04\xd5"
PADDING = 4095
EOL = "\r\n"
#: the largest count an int32 CBF pixel holds (the count cutoff of pybragg's files)
COUNT_CUTOFF = 2**31 - 1
HEADER_CONVENTION = "GENERIC_MINI"


# ---------------------------------------------------------------------------
# byte-offset compression


def byte_offset_compress(data: np.ndarray) -> bytes:
    """CBF byte-offset compression of an integer array (in C order).

    Each element is stored as its difference from the one before (the first from 0): one signed
    byte when it fits, else the escape byte -128 and a little-endian int16, else the int16 escape
    and an int32, else the int32 escape and an int64.
    """
    values = np.ascontiguousarray(data).ravel().astype(np.int64)
    delta = np.diff(values, prepend=np.int64(0))
    size = np.full(delta.shape, 1, dtype=np.int64)
    big1 = (delta < -127) | (delta > 127)
    big2 = (delta < -32767) | (delta > 32767)
    big4 = (delta < -2147483647) | (delta > 2147483647)
    size[big1] = 3
    size[big2] = 7
    size[big4] = 15
    ends = np.cumsum(size)
    out = np.zeros(int(ends[-1]) if ends.size else 0, dtype=np.uint8)
    start = ends - size
    small = ~big1
    out[start[small]] = delta[small].astype(np.int8).view(np.uint8)
    if big1.any():
        s = start[big1]
        out[s] = 0x80
        only2 = big1 & ~big2
        _put(out, start[only2] + 1, delta[only2].astype("<i2"))
        esc2 = start[big2]
        out[esc2 + 1] = 0x00
        out[esc2 + 2] = 0x80
        only4 = big2 & ~big4
        _put(out, start[only4] + 3, delta[only4].astype("<i4"))
        esc4 = start[big4]
        out[esc4 + 3] = 0x00
        out[esc4 + 4] = 0x00
        out[esc4 + 5] = 0x00
        out[esc4 + 6] = 0x80
        _put(out, start[big4] + 7, delta[big4].astype("<i8"))
    return out.tobytes()


def _put(out: np.ndarray, where: np.ndarray, values: np.ndarray) -> None:
    if not where.size:
        return
    raw = values.view(np.uint8).reshape(where.size, values.itemsize)
    for k in range(values.itemsize):
        out[where + k] = raw[:, k]


def byte_offset_decompress(raw: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`byte_offset_compress`: ``count`` int64 values."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    value = 0
    i = 0
    signed = buf.view(np.int8)
    # vectorised over runs of one-byte deltas, element by element elsewhere
    while i < count:
        stop = pos
        limit = min(len(buf), pos + (count - i))
        chunk = buf[pos:limit]
        escapes = np.flatnonzero(chunk == 0x80)
        run = int(escapes[0]) if escapes.size else len(chunk)
        if run:
            deltas = signed[pos:pos + run].astype(np.int64)
            out[i:i + run] = value + np.cumsum(deltas)
            value = int(out[i + run - 1])
            i += run
            pos += run
            continue
        stop = pos + 1
        d = int.from_bytes(raw[stop:stop + 2], "little", signed=True)
        stop += 2
        if d == -32768:
            d = int.from_bytes(raw[stop:stop + 4], "little", signed=True)
            stop += 4
            if d == -2147483648:
                d = int.from_bytes(raw[stop:stop + 8], "little", signed=True)
                stop += 8
        value += d
        out[i] = value
        i += 1
        pos = stop
    return out


# ---------------------------------------------------------------------------
# header text


def _mm(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) * 1000.0


def _num(x: float) -> str:
    """A number written with all the digits that matter (17 significant, trailing zeros dropped)."""
    x = float(x)
    if x == 0.0:
        return "0"
    text = f"{x:.17g}"
    short = f"{x:.12g}"
    return short if float(short) == x else text


def _vec(v) -> str:
    return " ".join(_num(0.0 if abs(x) < 1e-15 else x) for x in v)


def mini_header_describes(setup: Setup, tol: float = 1e-9) -> bool:
    """True when a Pilatus mini header alone gives the detector (imgCIF frame): one panel with its
    fast axis along +x and slow axis along -y, the beam along -z onto it, the spindle along +x."""
    if setup.frame != "imgcif":
        raise ValueError("mini_header_describes needs a setup in the imgCIF frame")
    if len(setup.panels) != 1:
        return False
    p = setup.panels[0]
    return bool(
        np.allclose(p.fast, (1, 0, 0), atol=tol) and np.allclose(p.slow, (0, -1, 0), atol=tol)
        and np.allclose(setup.beam, (0, 0, -1), atol=tol) and np.allclose(setup.spindle, (1, 0, 0), atol=tol)
        and float(p.origin @ setup.beam) > 0
    )


def polarization_fraction(setup: Setup, nopolar: bool = False) -> float:
    """The fraction of the beam polarised along the E-vector (Kahn factor K gives (1 + K) / 2)."""
    return 0.5 if nopolar else 0.5 * (1.0 + setup.polarization)


def polarization_normal(setup: Setup) -> np.ndarray:
    """Unit normal of the plane of the E-vector and the beam (beam x E-vector, pointing +y where it can)."""
    n = np.cross(setup.beam, setup.polar)
    norm = float(np.linalg.norm(n))
    if not norm > 0:
        return np.array([0.0, 1.0, 0.0])
    n = n / norm
    if n[1] < -1e-12 or (abs(n[1]) <= 1e-12 and n[0] < 0):
        n = -n
    return n


def mini_header(setup: Setup, *, title: str, nopolar: bool, timestamp: str | None = None) -> list[str]:
    """Lines of the Pilatus-style mini header (without the trailing end-of-line)."""
    p = setup.panels[0]
    px = p.pixel_size
    centre = p.beam_centre(setup.beam)
    bx, by = (centre[0] / px, centre[1] / px) if centre is not None else (float("nan"), float("nan"))
    deg = 180.0 / math.pi
    energy = 12398.4198 / (setup.wavelength * 1e10)
    stamp = timestamp or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    lines = [
        f"# Detector: {title}, S/N 0",
        f"# {stamp}",
        f"# Pixel_size {px * 1e6:.10g}e-6 m x {px * 1e6:.10g}e-6 m",
        f"# Silicon sensor, thickness {setup.thickness:.9f} m",
        f"# Exposure_time {setup.exposure:.7f} s",
        f"# Exposure_period {setup.exposure:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {COUNT_CUTOFF} counts",
        f"# Threshold_setting: {energy / 2:.0f} eV",
        "# Gain_setting: not a detector (simulated counts)",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: (nil)",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        "# Image_path: (nil)",
        f"# Wavelength {setup.wavelength * 1e10:.10g} A",
        f"# Detector_distance {abs(setup.close_distance):.10g} m",
        f"# Beam_xy ({bx:.6f}, {by:.6f}) pixels",
        f"# Flux {setup.flux:.6g}",
        "# Filter_transmission 1.0000",
        f"# Start_angle {setup.phi0 * deg:.6f} deg.",
        f"# Angle_increment {setup.osc * deg:.6f} deg.",
        f"# Detector_2theta {setup.twotheta * deg:.6f} deg.",
        f"# Polarization {polarization_fraction(setup, nopolar):.4f}",
        "# Alpha 0.0000 deg.",
        "# Kappa 0.0000 deg.",
        f"# Phi {setup.phi0 * deg:.6f} deg.",
        f"# Phi_increment {setup.osc * deg:.6f} deg.",
        "# Chi 0.0000 deg.",
        "# Chi_increment 0.0000 deg.",
        "# N_oscillations 1",
    ]
    if np.allclose(setup.spindle, (1.0, 0.0, 0.0), atol=1e-9):
        lines.insert(-1, "# Oscillation_axis X, CW")
    return lines


def imgcif_categories(setup: Setup, *, nopolar: bool) -> list[str]:
    """Lines of the full-CBF categories that place the detector, goniometer and beam (imgCIF frame)."""
    deg = 180.0 / math.pi
    p = setup.panels[0]
    px_mm = p.pixel_size * 1000.0
    # the element's axes hang off the two-theta axis: give them as they stand before that rotation
    R = rotation_about(setup.twotheta_axis, setup.twotheta)
    corner = R.T @ _mm(p.origin)
    fast = R.T @ p.fast
    slow = R.T @ p.slow
    n_pol = polarization_normal(setup)
    norm_angle = math.degrees(math.atan2(n_pol[0], n_pol[1]))
    source = -setup.beam
    lines = [
        "_diffrn.id DIFFRN",
        "_diffrn.crystal_id XTAL",
        "",
        "_diffrn_source.diffrn_id DIFFRN",
        "_diffrn_source.source 'pybragg simulation'",
        "_diffrn_source.type 'pybragg simulation'",
        "",
        "_diffrn_radiation.diffrn_id DIFFRN",
        "_diffrn_radiation.wavelength_id WAVELENGTH1",
        "_diffrn_radiation.probe x-ray",
        "_diffrn_radiation.monochromator 'simulated'",
        f"_diffrn_radiation.polarizn_source_ratio {_num(0.0 if nopolar else setup.polarization)}",
        f"_diffrn_radiation.polarizn_source_norm {_num(norm_angle)}",
        "_diffrn_radiation.div_x_source 0.0",
        "_diffrn_radiation.div_y_source 0.0",
        "_diffrn_radiation.div_x_y_source 0.0",
        "",
        "_diffrn_radiation_wavelength.id WAVELENGTH1",
        f"_diffrn_radiation_wavelength.wavelength {_num(setup.wavelength * 1e10)}",
        "_diffrn_radiation_wavelength.wt 1.0",
        "",
        "_diffrn_measurement.diffrn_id DIFFRN",
        "_diffrn_measurement.id GONIOMETER",
        "_diffrn_measurement.number_of_axes 1",
        "_diffrn_measurement.method rotation",
        f"_diffrn_measurement.sample_detector_distance {_num(abs(setup.close_distance) * 1000.0)}",
        "",
        "_diffrn_measurement_axis.measurement_id GONIOMETER",
        "_diffrn_measurement_axis.axis_id SPINDLE",
        "",
        "_diffrn_detector.diffrn_id DIFFRN",
        "_diffrn_detector.id DETECTOR",
        "_diffrn_detector.type 'pybragg simulation'",
        "_diffrn_detector.details 'simulated photon counts'",
        "_diffrn_detector.number_of_axes 1",
        "",
        "_diffrn_detector_axis.detector_id DETECTOR",
        "_diffrn_detector_axis.axis_id DETECTOR_TWO_THETA",
        "",
        "_diffrn_detector_element.id ELEMENT1",
        "_diffrn_detector_element.detector_id DETECTOR",
        "",
        "_diffrn_data_frame.id FRAME1",
        "_diffrn_data_frame.detector_element_id ELEMENT1",
        "_diffrn_data_frame.array_id ARRAY1",
        "_diffrn_data_frame.binary_id 1",
        "",
        "_diffrn_scan.id SCAN1",
        "_diffrn_scan.frame_id_start FRAME1",
        "_diffrn_scan.frame_id_end FRAME1",
        "_diffrn_scan.frames 1",
        "",
        "loop_",
        "_diffrn_scan_axis.scan_id",
        "_diffrn_scan_axis.axis_id",
        "_diffrn_scan_axis.angle_start",
        "_diffrn_scan_axis.angle_range",
        "_diffrn_scan_axis.angle_increment",
        "_diffrn_scan_axis.displacement_start",
        "_diffrn_scan_axis.displacement_range",
        "_diffrn_scan_axis.displacement_increment",
        f"SCAN1 SPINDLE {_num(setup.phi0 * deg)} {_num(setup.osc * deg)} {_num(setup.osc * deg)} 0.0 0.0 0.0",
        f"SCAN1 DETECTOR_TWO_THETA {_num(setup.twotheta * deg)} 0.0 0.0 0.0 0.0 0.0",
        "",
        "_diffrn_scan_frame.frame_id FRAME1",
        "_diffrn_scan_frame.frame_number 1",
        f"_diffrn_scan_frame.integration_time {_num(setup.exposure)}",
        f"_diffrn_scan_frame.exposure_time {_num(setup.exposure)}",
        "_diffrn_scan_frame.scan_id SCAN1",
        "",
        "loop_",
        "_diffrn_scan_frame_axis.frame_id",
        "_diffrn_scan_frame_axis.axis_id",
        "_diffrn_scan_frame_axis.angle",
        "_diffrn_scan_frame_axis.displacement",
        f"FRAME1 SPINDLE {_num(setup.phi0 * deg)} 0.0",
        f"FRAME1 DETECTOR_TWO_THETA {_num(setup.twotheta * deg)} 0.0",
        "",
        "loop_",
        "_axis.id",
        "_axis.type",
        "_axis.equipment",
        "_axis.depends_on",
        "_axis.vector[1]",
        "_axis.vector[2]",
        "_axis.vector[3]",
        "_axis.offset[1]",
        "_axis.offset[2]",
        "_axis.offset[3]",
        f"SOURCE general source . {_vec(source)} . . .",
        "GRAVITY general gravity . 0 -1 0 . . .",
        f"SPINDLE rotation goniometer . {_vec(setup.spindle)} . . .",
        f"DETECTOR_TWO_THETA rotation detector . {_vec(setup.twotheta_axis)} . . .",
        f"ELEMENT_X translation detector DETECTOR_TWO_THETA {_vec(fast)} {_vec(corner)}",
        f"ELEMENT_Y translation detector ELEMENT_X {_vec(slow)} 0 0 0",
        "",
        "loop_",
        "_array_structure_list.array_id",
        "_array_structure_list.index",
        "_array_structure_list.dimension",
        "_array_structure_list.precedence",
        "_array_structure_list.direction",
        "_array_structure_list.axis_set_id",
        f"ARRAY1 1 {p.fpixels} 1 increasing ELEMENT_X",
        f"ARRAY1 2 {p.spixels} 2 increasing ELEMENT_Y",
        "",
        "loop_",
        "_array_structure_list_axis.axis_set_id",
        "_array_structure_list_axis.axis_id",
        "_array_structure_list_axis.displacement",
        "_array_structure_list_axis.displacement_increment",
        f"ELEMENT_X ELEMENT_X {_num(px_mm / 2)} {_num(px_mm)}",
        f"ELEMENT_Y ELEMENT_Y {_num(px_mm / 2)} {_num(px_mm)}",
        "",
        "loop_",
        "_array_element_size.array_id",
        "_array_element_size.index",
        "_array_element_size.size",
        f"ARRAY1 1 {_num(p.pixel_size)}",
        f"ARRAY1 2 {_num(p.pixel_size)}",
        "",
        "_array_intensities.array_id ARRAY1",
        "_array_intensities.binary_id 1",
        "_array_intensities.linearity linear",
        "_array_intensities.gain 1.0",
        "_array_intensities.gain_esd 0.0",
        f"_array_intensities.overload {COUNT_CUTOFF}",
        "_array_intensities.undefined_value -1",
        "",
        "_array_structure.id ARRAY1",
        "_array_structure.encoding_type 'signed 32-bit integer'",
        "_array_structure.compression_type x-CBF_BYTE_OFFSET",
        "_array_structure.byte_order little_endian",
        "",
    ]
    return lines


def cbf_bytes(counts: np.ndarray, setup: Setup, *, title: str = "pybragg simulation", nopolar: bool = False,
              full: bool | None = None, timestamp: str | None = None, block: str = "image_1") -> bytes:
    """The bytes of a CBF holding ``counts`` (int32, slow x fast) for ``setup`` (imgCIF frame).

    ``full``: write the imgCIF axis categories (None: only where the mini header cannot describe
    the detector, see :func:`mini_header_describes`).
    """
    if setup.frame != "imgcif":
        raise ValueError("a CBF needs a setup in the imgCIF frame")
    if len(setup.panels) != 1:
        raise ValueError(f"a CBF holds one panel; this detector has {len(setup.panels)}")
    data = np.ascontiguousarray(counts)
    if data.ndim != 2 or data.dtype.kind not in "iu":
        raise ValueError("CBF counts must be a 2-D integer array")
    slow, fast = data.shape
    if full is None:
        full = not mini_header_describes(setup)
    packed = byte_offset_compress(data)
    digest = base64.b64encode(hashlib.md5(packed).digest()).decode("ascii")
    text: list[str] = [f"###CBF: VERSION 1.5, pybragg {_version()}", "", f"data_{block}", ""]
    if full:
        text += imgcif_categories(setup, nopolar=nopolar)
    text += [
        f"_array_data.header_convention {HEADER_CONVENTION}",
        "_array_data.header_contents",
        ";",
        *mini_header(setup, title=title, nopolar=nopolar, timestamp=timestamp),
        ";",
        "",
        "_array_data.data",
        ";",
        "--CIF-BINARY-FORMAT-SECTION--",
        "Content-Type: application/octet-stream;",
        '     conversions="x-CBF_BYTE_OFFSET"',
        "Content-Transfer-Encoding: BINARY",
        f"X-Binary-Size: {len(packed)}",
        "X-Binary-ID: 1",
        'X-Binary-Element-Type: "signed 32-bit integer"',
        "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
        f"Content-MD5: {digest}",
        f"X-Binary-Number-of-Elements: {slow * fast}",
        f"X-Binary-Size-Fastest-Dimension: {fast}",
        f"X-Binary-Size-Second-Dimension: {slow}",
        f"X-Binary-Size-Padding: {PADDING}",
        "",
    ]
    head = EOL.join(text).encode("ascii") + EOL.encode("ascii")
    tail = (EOL + "--CIF-BINARY-FORMAT-SECTION----" + EOL + ";" + EOL + EOL).encode("ascii")
    return head + BINARY_START + packed + bytes(PADDING) + tail


def write_cbf(path: str | os.PathLike[str], counts: np.ndarray, setup: Setup, **options) -> None:
    """Write :func:`cbf_bytes` to ``path`` (the caller makes the write all-or-nothing)."""
    with open(path, "wb") as handle:
        handle.write(cbf_bytes(counts, setup, **options))


def read_cbf(path: str | os.PathLike[str]) -> tuple[str, np.ndarray]:
    """Header text and pixels (int32, slow x fast) of a byte-offset CBF such as pybragg writes."""
    name = describe_path(path)
    raw = read_bytes(path)
    start = raw.find(BINARY_START)
    if start < 0:
        raise FormatError(f"{name}: not a CBF: no binary section")
    head = raw[:start].decode("latin-1")
    keys: dict[str, str] = {}
    for line in head.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("X-Binary"):
            keys[key.strip()] = value.strip()
    try:
        size = int(keys["X-Binary-Size"])
        fast = int(keys["X-Binary-Size-Fastest-Dimension"])
        slow = int(keys["X-Binary-Size-Second-Dimension"])
    except (KeyError, ValueError):
        raise FormatError(f"{name}: CBF binary section lacks its size keys") from None
    if "x-CBF_BYTE_OFFSET" not in head:
        raise FormatError(f"{name}: only byte-offset compressed CBF files are read")
    packed = raw[start + 4:start + 4 + size]
    if len(packed) < size:
        raise FormatError(f"{name}: truncated binary section")
    return head, byte_offset_decompress(packed, slow * fast).astype(np.int32).reshape(slow, fast)


def _version() -> str:
    from pybragg import __version__

    return __version__
