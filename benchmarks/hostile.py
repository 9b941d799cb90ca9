"""Time and peak memory of `check_policies` on hostile files: an alias bomb,
lists nested 5,000 deep, a recursive alias, a 1 MiB file. Each must be
rejected in milliseconds with a few MB (before the loader was bounded the
alias bomb took 715 MB and 11.7 s).

    python benchmarks/hostile.py
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

from scaler.decide.loading import check_policies

BOMB = "\n".join(
    ["a: &a [" + ",".join(["lol"] * 9) + "]"]
    + [f"{name}: &{name} [" + ",".join([f"*{chr(ord(name) - 1)}"] * 9) + "]" for name in "bcdefghi"]
    + ["policies: [*i]", ""])
CASES = {
    "alias bomb": BOMB,
    "lists 5,000 deep": "policies: " + "[" * 5000 + "]" * 5000 + "\n",
    "recursive alias": "policies: &p [*p]\n",
    "1 MiB of comment": "# " + "x" * (1024 * 1024 - 3) + "\n",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for name, text in CASES.items():
            path = Path(directory) / "p.yaml"
            path.write_text(text)
            tracemalloc.start()
            started = time.perf_counter()
            _, problems = check_policies([path])
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            message = problems[0].message if problems else "accepted"
            print(f"{name:18} {len(text.encode()):>8} bytes  {seconds * 1000:7.1f} ms  "
                  f"peak {peak / 1e6:6.1f} MB  {message[:70]}")


if __name__ == "__main__":
    main()
