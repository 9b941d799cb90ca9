"""Where a benchmark's CPU went: the CPU seconds of named processes and the
machine's idle time, sampled every 50 ms by a background thread, read
back for any span afterwards (a span's end may only be known later, from
a log's timestamps)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def idle_seconds() -> float:
    """The machine's idle and I/O-wait seconds, summed over its CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[3] + fields[4]) / TICKS


def pid_of(*words: str) -> int | None:
    """The first process whose command line holds every one of `words`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(word in command for word in words):
            return int(entry.name)
    return None


class CpuTrace:
    """Samples `pids` (name -> pid; changeable while it runs) and the idle time."""

    def __init__(self, pids: dict[str, int], period: float = 0.05) -> None:
        self.pids, self.period = pids, period
        self.rows: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            row = {name: cpu_seconds(pid) for name, pid in dict(self.pids).items()}
            row["idle"] = idle_seconds()
            self.rows.append((time.time(), row))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def span(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per name (and idle CPU seconds) between two wall-clock
        instants, from the samples nearest them; and the span's `seconds`."""
        first = min(self.rows, key=lambda row: abs(row[0] - start))
        last = min(self.rows, key=lambda row: abs(row[0] - end))
        spent = {name: last[1][name] - first[1].get(name, 0.0) for name in last[1]}
        return {**spent, "seconds": last[0] - first[0]}
