"""The default number of CPU threads for torch: the cores that are idle now (torch-free).

torch's own default is one thread per physical core. That is right on an idle
machine and very wrong on a busy one: its worker threads wait for each other at
every operation, and a thread whose core is taken by another process stalls all
of them. Measured on this project's 2-core machine (issue 13, and
``benchmarks/threads.py``; BENCHMARKS.md quotes the table), the README's main command
took 33.5 s with torch's default against 19.0 s with one thread beside four
busy processes, while idle the default was only 4% faster than one thread.

:func:`default_threads` therefore counts the cores that are idle *now*, from two
samples of ``/proc/stat`` 0.2 s apart, and uses that many threads (at least 1,
at most the cores this process may run on). ``--threads N`` or
``OMP_NUM_THREADS`` override it.
"""

from __future__ import annotations

import os
import time

__all__ = ["available_cores", "idle_cores", "default_threads"]

#: Seconds between the two /proc/stat samples.
SAMPLE_SECONDS = 0.2


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> dict[str, tuple[int, int]] | None:
    """Per CPU: (idle + iowait jiffies, total jiffies), from /proc/stat; None if unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0] != "cpu":
            values = [int(v) for v in parts[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            out[parts[0]] = (idle, sum(values[:8]))
    return out


def idle_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores were idle over the next ``seconds`` (0.0 .. cores),
    or None where /proc/stat is not available."""
    first = _cpu_times()
    if not first:
        return None
    time.sleep(seconds)
    second = _cpu_times() or {}
    try:
        allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        allowed = set(first)
    idle = 0.0
    for cpu, (i0, t0) in first.items():
        if cpu not in allowed or cpu not in second:
            continue
        i1, t1 = second[cpu]
        if t1 > t0:
            idle += min(1.0, max(0.0, (i1 - i0) / (t1 - t0)))
    return idle


def default_threads() -> int:
    """Threads for torch when none are asked for: ``OMP_NUM_THREADS`` if set, else the
    number of idle cores rounded to the nearest integer (a core counts when at least half
    idle), at least 1 and at most :func:`available_cores`.

    Returns:
        an integer >= 1.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    cores = available_cores()
    idle = idle_cores()
    if idle is None:
        return cores
    return max(1, min(cores, int(idle + 0.5)))


def check_threads(value, *, allow_torch: bool = True) -> int | None:
    """A ``threads`` value as every command takes it: ``None`` stays ``None``; an integer >= 1
    (``2``, ``"2"``); with ``allow_torch``, ``'torch'`` -> ``None`` (torch's own choice).

    Raises:
        SettingError: (a ValueError) anything else, naming ``threads`` (``--threads`` on the
            command line) and the values it takes.
    """
    if value is None:
        return None
    if allow_torch and str(value).strip().lower() == "torch":
        return None
    from boomerang.errors import SettingError
    from boomerang.levels import check_positive_int

    try:
        return check_positive_int(value, "threads")
    except SettingError:
        accepted = "an integer >= 1 (the number of CPU threads), or 'torch' for torch's own choice" if allow_torch \
            else "an integer >= 1 (the number of CPU threads)"
        raise SettingError(f"`threads` must be {accepted}; got {value!r}") from None


def resolve_threads(value) -> int | None:
    """The ``--threads`` value to use: ``None`` (not given) -> :func:`default_threads`;
    ``'torch'`` -> ``None`` (leave torch's own default, one per physical core); else an
    integer >= 1 (:func:`check_threads`).

    Raises:
        SettingError: (a ValueError) anything else, naming ``threads``.
    """
    if value is None:
        return default_threads()
    return check_threads(value, allow_torch=True)
