"""Argument checks shared by the distributed formulas: sizes that may be written ``7e9`` and plain byte counts."""

from __future__ import annotations

import math
import numbers


def whole_count(name: str, value: object, *, example: str) -> int:
    """A count >= 1 given as an ``int`` or a float with no fractional part (``7e9``); nothing is rounded."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number >= 1, e.g. {name}={example}; got {value!r}")
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name} must be a whole number (nothing is rounded), e.g. {name}={example}; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, e.g. {name}={example}; got {value!r}")
    return int(value)


def non_negative(name: str, value: object, *, example: float) -> float:
    """A finite real number >= 0 (a byte count, bytes per value)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, e.g. {name}={example}; got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, e.g. {name}={example}; got {value!r}")
    return float(value)
