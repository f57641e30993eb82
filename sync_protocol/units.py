"""Sizes, durations and rates as operators write them: ``20GiB``, ``20g``, ``5m``, ``2Mbit``, ``256kbit/s``.

The one parser for both nodes' command lines, the edge's settings and the scenario files, so that one
spelling means one thing everywhere (``--max-disk 20g`` on the command line and ``max_disk = "20g"`` in a
scenario file). Sizes use bytes (``B``, ``K``/``KB``=1000, ``Ki``/``KiB``=1024, ..., case-insensitive);
durations seconds (``250ms``, ``30s``, ``5m``, ``2h``, ``7d``, a bare number is seconds); rates use *bits*
per second, as links are sold (``2Mbit`` = 2,000,000 bit/s = 250,000 bytes/s).
"""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}
"""Size units without their optional trailing ``b``: ``20g``, ``20gb``, ``20gi`` and ``20GiB`` all parse."""
_DURATION_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE_UNITS = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
    "bps": 1, "kbps": 10**3, "mbps": 10**6, "gbps": 10**9,
}
_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes from ``20GiB``, ``20g``, ``512MB``, ``64mib``, ``1048576``. Raises ValueError with the accepted
    spellings."""
    match = _NUMBER_UNIT.fullmatch(str(text))
    unit = match.group(2).lower() if match else None
    if unit and unit[0] in "kmgt":
        unit = unit.removesuffix("b")
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size; write e.g. 20GiB, 512MiB, 64MB or a number of bytes")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """Seconds from ``300``, ``250ms``, ``30s``, ``5m``, ``2h``, ``7d``. Raises ValueError on anything else."""
    match = _NUMBER_UNIT.fullmatch(str(text))
    unit = match.group(2) if match else None  # case matters: an ``M`` could be months
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parse_rate(text: str) -> float:
    """Bits per second from ``2Mbit``, ``256kbit/s``, ``100Mbps``. Raises ValueError on anything else."""
    cleaned = str(text).strip()
    if cleaned.lower().endswith("/s"):
        cleaned = cleaned[:-2]
    match = _NUMBER_UNIT.fullmatch(cleaned)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _RATE_UNITS:
        raise ValueError(f"{text!r} is not a rate; write e.g. 2Mbit, 256kbit/s or 100Mbps (bits per second)")
    return float(match.group(1)) * _RATE_UNITS[unit]


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_rate(bits_per_second: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.1f} {unit}"
    return f"{bits_per_second:.0f} bit/s"
