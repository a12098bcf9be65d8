"""Sizes as people write them (``4G``, ``512M``, ``1.5GiB``) and as banger prints them."""

from __future__ import annotations

import re

from banger.errors import UserError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, *, what: str = "size") -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise UserError(
            f"{what} {text!r} is not a size",
            hint="write a number with an optional unit, like 512M, 4G or 1.5GiB",
        )
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value < 1:
        raise UserError(f"{what} {text!r} must be larger than zero")
    return int(value)


def format_size(num: int | float) -> str:
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
