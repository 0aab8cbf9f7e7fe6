"""Size caps: the numbers that keep hostile or mistaken input from taking the machine, in one place.

Each cap is checked before the thing it guards is allocated or read. The README's "What a study
guarantees" lists them; a test checks each one.
"""

from __future__ import annotations

import os

# A space, config or study YAML / JSON is a few KB (the shipped ones are under 10 KB); refuse a file over
# this before reading it, so a 300 MB file (or /dev/zero) is never read whole.
MAX_TEXT_FILE_BYTES = 8 << 20
# What one worker process costs before its trial allocates anything, beyond its copy of the data (which
# the caller adds): issue 14 measured 3.3 GB for 18 digits processes, about 190 MB each; doubled for a
# trial's own tensors. (Max RSS of one process is higher, ~750 MB, but counts torch's shared libraries.)
WORKER_BASE_BYTES = 400 << 20


def usable_cores() -> int:
    """The cores this process may use (containers and taskset pin us to fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_workers(workers: int, *, force: bool, per_worker_bytes: int = WORKER_BASE_BYTES) -> str | None:
    """Refuse more workers than usable cores, or than the available memory holds, unless `force`.

    Returns the problem (a sentence) or None; the caller names its own flag in the message."""
    cores = usable_cores()
    if workers > cores and not force:
        return f"{workers} workers on {cores} usable cores would only slow every trial down"
    mem = available_memory()
    if mem is not None and workers * per_worker_bytes > mem and not force:
        return (
            f"{workers} workers need about {workers * per_worker_bytes / 2**30:.1f} GiB "
            f"({per_worker_bytes / 2**20:.0f} MiB each) and {mem / 2**30:.1f} GiB is available"
        )
    return None
