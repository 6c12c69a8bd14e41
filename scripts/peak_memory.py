#!/usr/bin/env python3
"""Run a command and report its wall time and the peak memory of its whole process tree.

    python3 scripts/peak_memory.py -- auditor fleet scan sample_models -o fleet-out --workers 2

A fleet's memory is the sum over its worker processes (and, in Ray mode, Ray's own daemons), which
``/usr/bin/time`` does not give: it reports the largest single process. This samples the summed
resident set size of the command and all its descendants from /proc (Linux) every half second and
prints the peak, the wall time and the command's exit code on the last line of stderr. Processes that
re-parent themselves away from the tree (daemonized) are not counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_rss(root: int) -> tuple[int, int]:
    """Summed RSS in bytes of ``root`` and its descendants, and how many processes that is."""
    tree, todo, total, count = _children(), [root], 0, 0
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            count += 1
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(tree.get(pid, []))
    return total, count


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    started = time.monotonic()
    process = subprocess.Popen(command)
    peak, peak_count = 0, 0
    while process.poll() is None:
        rss, count = tree_rss(process.pid)
        if rss > peak:
            peak, peak_count = rss, count
        time.sleep(0.5)
    print(f"peak_memory: {peak / 2**20:.0f} MiB over {peak_count} process(es); wall {time.monotonic() - started:.1f} s; "
          f"exit code {process.returncode}", file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
