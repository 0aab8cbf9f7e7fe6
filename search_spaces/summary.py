"""One-line summaries of a CNN config for the report's tables (the report takes them as callbacks).

>>> block_summary({"stages": [{"block": "Conv", "channels": 32, "stride": 2},
...                           {"block": "InvertedResidual", "channels": 64, "repeats": 2}]})
'Conv32s2-IR64x2'
"""

from __future__ import annotations


def _abbrev(block: str) -> str:
    # "InvertedResidual" -> "IR", "BottleNeck" -> "BN"; one-word names ("Conv") stay whole.
    caps = "".join(c for c in block if c.isupper())
    return caps if len(caps) >= 2 else block


def block_summary(config: dict) -> str:
    """One short line per architecture: `Conv32s2-IR64x2` (block, channels, s<stride> if not 1, x<repeats> if not 1)."""
    parts = []
    for st in config.get("stages") or []:
        if not isinstance(st, dict):
            continue
        s = f"{_abbrev(str(st.get('block', '?')))}{st.get('channels', '')}"
        if st.get("stride", 1) != 1:
            s += f"s{st['stride']}"
        if st.get("repeats", 1) != 1:
            s += f"x{st['repeats']}"
        parts.append(s)
    return "-".join(parts)


# What `nas report` passes as ``summaries``: column name -> summary of a config.
SUMMARIES = {"blocks": block_summary}
