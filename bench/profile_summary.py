#!/usr/bin/env python3
"""Sums a LibTorch profiler trace (zimage_bench --profile) per op: self time (the op's duration minus
the ops it called on the same thread), total time, and calls, largest self time first.

  python3 bench/profile_summary.py TRACE.json [--top 25]
"""
import argparse
import json
from collections import defaultdict


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    with open(a.trace) as f:
        text = f.read().strip()
    events = json.loads(text if text.endswith("]") else text.rstrip(",") + "]")
    by_thread = defaultdict(list)
    for e in events:
        if e.get("ph") == "X":
            by_thread[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    self_us, total_us, calls = defaultdict(float), defaultdict(float), defaultdict(int)
    for spans in by_thread.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack = []  # (end, name)
        for ts, dur, name in spans:
            while stack and stack[-1][0] <= ts:
                stack.pop()
            if stack:
                self_us[stack[-1][1]] -= dur
            self_us[name] += dur
            total_us[name] += dur
            calls[name] += 1
            stack.append((ts + dur, name))
    wall = sum(self_us.values())
    print(f"{'op':<40} {'self ms':>10} {'share':>7} {'total ms':>10} {'calls':>7}")
    for name, s in sorted(self_us.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{name:<40} {s / 1e3:>10.1f} {s / wall:>7.1%} {total_us[name] / 1e3:>10.1f} {calls[name]:>7}")


if __name__ == "__main__":
    main()
