"""Per-call time of vocabulary.complete / resolve over a realistic mix of typed queries (prints microseconds)."""

from __future__ import annotations

import statistics
import time

QUERIES = [("l", None), ("li", "ct"), ("liv", "ct"), ("liver", "ct"), ("kidney_L", "ct"), ("L kidney", "ct"),
           ("IVC", "ct"), ("T12", "ct"), ("L4-L5 disc", "mri"), ("left 5th rib", "ct"), ("Parotid_L", "ct"),
           ("Glnd_Submand_R", "ct"), ("gall bladder", "mri"), ("pancraes", "ct"), ("hipocampus", "mri"),
           ("vertebrae_L3", "ct"), ("brain tumor", "mri"), ("xqzvbn", "ct"), ("head and neck", "pet"), ("sp", None)]


def bench(fn, rounds: int = 200) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        for q, m in QUERIES:
            t = time.perf_counter()
            try:
                fn(q, m or "ct")
            except Exception:
                pass
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.mean(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


def main() -> None:
    t = time.perf_counter()
    from SATSegmentLib import vocabulary
    print(f"import SATSegmentLib.vocabulary: {(time.perf_counter() - t) * 1e3:.1f} ms")
    t = time.perf_counter()
    vocabulary.complete("pancraes", None)  # builds the alias and typo indexes once
    print(f"first call (index build): {(time.perf_counter() - t) * 1e3:.1f} ms")
    for name, fn in (("complete", lambda q, m: vocabulary.complete(q, m)), ("resolve", vocabulary.resolve)):
        mean, p99 = bench(fn)
        print(f"{name:8s} mean {mean:7.1f} us/call   p99 {p99:7.1f} us/call   ({len(QUERIES)} query mix)")
    for q, m in QUERIES:
        t = time.perf_counter()
        for _ in range(200):
            vocabulary.complete(q, m)
        print(f"  complete({q!r}, {m!r}): {(time.perf_counter() - t) / 200 * 1e6:.1f} us")


if __name__ == "__main__":
    main()
