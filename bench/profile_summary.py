"""Sum a py-spy raw profile (``BENCH_PYSPY=<dir>`` recordings) per frame: self and inclusive sample counts.

    .venv/bin/python bench/profile_summary.py /tmp/prof/job_latency-claret.txt [--top 30] [--thread-main]

``--thread-main`` keeps only stacks of the event loop thread (those through ``Runner.run``), since
py-spy also samples threads blocked in C (aiosqlite's queue, grpc's pollers) as if they were busy.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--thread-main", action="store_true")
    parser.add_argument("--grep", help="only stacks containing this text")
    options = parser.parse_args()
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in options.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if options.thread_main and "Runner.run" not in stack:
            continue
        if options.grep and options.grep not in stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"{total} samples")
    print("-- self")
    for frame, samples in own.most_common(options.top):
        print(f"{samples:7d} {100 * samples / max(total, 1):5.1f}%  {frame}")
    print("-- inclusive")
    for frame, samples in inclusive.most_common(options.top):
        print(f"{samples:7d} {100 * samples / max(total, 1):5.1f}%  {frame}")


if __name__ == "__main__":
    main()
