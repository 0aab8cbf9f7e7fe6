"""Numbers, dates and durations as a person reads them. Imports nothing of ours.

>>> si(12_300_000), when(0.0)[:4].isdigit(), duration(76.6356)
('12.3M', True, '1m 16.6s')
"""

from __future__ import annotations

import math
import time
from typing import Any


def _missing(x: Any) -> bool:
    if x is None or type(x).__name__ == "NAType":  # pandas.NA, without importing pandas here
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def si(x: Any) -> str:
    """12_300_000 -> '12.3M', 4688 -> '4.69K', 178 -> '178'; missing (None, NaN, NA) -> '-'.
    MACs and parameter counts read better in SI, to three significant digits."""
    if _missing(x):
        return "-"
    x = float(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


def when(unix_seconds: Any) -> str:
    """Unix seconds -> local time '2026-12-06 07:12:03'; missing -> '-'."""
    if _missing(unix_seconds):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(unix_seconds)))


def duration(seconds: Any) -> str:
    """Seconds -> '4.2s', '1m 16.6s', '2h 03m 07s', '3d 04h 05m'; missing -> '-'."""
    if _missing(seconds):
        return "-"
    s = float(seconds)
    sign, s = ("-" if s < 0 else ""), round(abs(s), 1)  # rounded first: 59.96 s is "1m 0.0s", not "60.0s"
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{sign}{int(m)}m {r:.1f}s"
    if s < 86400:
        h, r = divmod(int(round(s)), 3600)
        return f"{sign}{h}h {r // 60:02d}m {r % 60:02d}s"
    d, r = divmod(int(round(s)), 86400)
    return f"{sign}{d}d {r // 3600:02d}h {r % 3600 // 60:02d}m"


def clock(seconds: float) -> str:
    """Whole seconds, compact, for a progress line that redraws: '45s', '1m15s', '2h03m'."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
