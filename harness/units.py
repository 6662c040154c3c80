"""Sizes, scenario values and tolerances: the units scenarios are written in.

Bottom layer: imports nothing from the harness. Sizes are powers of 1024, as the kernel's own
memparse() reads them (`32M` = 33554432), so a scenario's `32M` means what `echo 32M >
memory.max` means.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# 32M, 32m, 32MB, 32MiB, 1.5G, 4096, 4096B
_SIZE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(?:I?B)?", re.IGNORECASE)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


def parse_size(value: str | int) -> int:
    """`32M`, `1G`, `512K`, `4096`, 4096 -> bytes (powers of 1024).

    Raises ValueError naming the text for anything else (negative numbers, `max`, fractions of a
    byte, words).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not float(value).is_integer():
            raise ValueError(f"not a size: {value!r} (sizes are whole, non-negative bytes)")
        return int(value)
    # anything else that is not a string (True, None, a list) fails the pattern below
    text = value.strip() if isinstance(value, str) else repr(value)
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"not a size: {value!r} (expected e.g. 4096, 512K, 32M, 1G)")
    number = m["num"]
    mult = _UNITS[m["unit"].upper()]
    if "." in number:
        whole, frac = number.split(".")
        # exact arithmetic: 1.5G is 1610612736, 1.1 (bytes) is an error
        scaled = int(whole) * mult + int(frac) * mult // 10 ** len(frac)
        if int(frac) * mult % 10 ** len(frac):
            raise ValueError(f"not a size: {value!r} (not a whole number of bytes)")
        return scaled
    return int(number) * mult


def format_size(n: int) -> str:
    """Bytes -> the largest unit that divides them exactly (`33554432` -> `32M`), else one
    decimal in the largest unit not above them (`33554431` -> `32.0M`), bytes below 1K."""
    sign = "-" if n < 0 else ""
    n = abs(int(n))
    for unit in ("T", "G", "M", "K"):
        mult = _UNITS[unit]
        if n >= mult and n % mult == 0:
            return f"{sign}{n // mult}{unit}"
    for unit in ("T", "G", "M", "K"):
        mult = _UNITS[unit]
        if n >= mult:
            return f"{sign}{n / mult:.1f}{unit}"
    return f"{sign}{n}"


def parse_value(x: object) -> int | float | str:
    """A scenario value (as YAML loaded it) -> int, float or str.

    Numbers stay numbers (booleans become 1/0), numeric strings become numbers, sizes
    (`32M`) become bytes, `max` stays `max`, and any other word stays as written (`SIGKILL`,
    `EINVAL`, `FROZEN`, `10%`, `"20000 100000"`).
    """
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int | float):
        return x
    if x is None or isinstance(x, list | dict | tuple | set):
        raise ValueError(f"not a scalar value: {x!r}")
    text = str(x).strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    try:
        return parse_size(text)
    except ValueError:
        return text


def parse_tolerance(value: str | float) -> tuple[str, int | float]:
    """An `approx` tolerance -> ("percent", 10.0) for `10%`, ("absolute", amount) for a number
    or a size (`4M` -> 4194304, 0.5 -> 0.5). Raises ValueError naming the text otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"not a tolerance: {value!r} (negative)")
        return ("absolute", value)
    text = value.strip() if isinstance(value, str) else repr(value)
    if text.endswith("%"):
        number = text[:-1].strip()
        if not _FLOAT.fullmatch(number) or float(number) < 0:
            raise ValueError(f"not a tolerance: {value!r} (expected e.g. 10%)")
        return ("percent", float(number))
    if _FLOAT.fullmatch(text) and not _INT.fullmatch(text):
        if float(text) < 0:
            raise ValueError(f"not a tolerance: {value!r} (negative)")
        return ("absolute", float(text))
    try:
        return ("absolute", parse_size(text))
    except ValueError:
        raise ValueError(f"not a tolerance: {value!r} (expected e.g. 10%, 4M, 0.5)") from None
