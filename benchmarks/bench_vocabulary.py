"""Per-call time of vocabulary.complete / resolve: a realistic query mix and a worst-case set (microseconds).

Run under the lock on a shared machine: `OMP_NUM_THREADS=2 flock /tmp/heavy.lock python benchmarks/bench_vocabulary.py`.
"""

from __future__ import annotations

import random
import statistics
import string
import time
from collections.abc import Callable

MIX = [("l", None), ("li", "ct"), ("liv", "ct"), ("liver", "ct"), ("kidney_L", "ct"), ("L kidney", "ct"),
       ("IVC", "ct"), ("T12", "ct"), ("L4-L5 disc", "mri"), ("left 5th rib", "ct"), ("Parotid_L", "ct"),
       ("Glnd_Submand_R", "ct"), ("gall bladder", "mri"), ("pancraes", "ct"), ("hipocampus", "mri"),
       ("vertebrae_L3", "ct"), ("brain tumor", "mri"), ("xqzvbn", "ct"), ("head and neck", "pet"), ("sp", None)]
CHARS = string.ascii_lowercase + string.digits
Query = tuple[str, "str | None"]


def worst_cases(vocab: list[str]) -> dict[str, list[Query]]:
    """Groups of hard queries: short prefixes, long nonsense, typo-heavy and empty input."""
    rng = random.Random(0)
    long_words = [w for w in vocab if len(w) >= 8]
    misspelt = [w[:i] + w[i + 1:] for w in rng.sample(long_words, 40) for i in [rng.randrange(1, len(w) - 1)]]
    return {
        "1 char x 4 modalities": [(c, m) for c in CHARS for m in (None, "ct", "mri", "pet")],
        "2 chars (a-z0-9)^2": [(a + b, m) for a in CHARS for b in CHARS for m in (None, "ct")],
        "3-letter word starts": sorted({(w[:3], None) for w in vocab if len(w) >= 3}),
        "long nonsense": [("".join(rng.choices(string.printable, k=200)), None),
                          ("".join(rng.choices(string.ascii_lowercase + " ", k=10_000)), "ct"),
                          ("".join(rng.choices(string.ascii_lowercase, k=10_000)), None),
                          ("liver " * 1667, "ct"), ("l r " * 2500, None), ("é" * 10_000, "mri")],
        "typo-heavy": [(" ".join(misspelt), None), ("hipocampus " * 25, "mri"), ("pancraes tumr", "ct"),
                       ("rigth lnug lowr lobe", None), ("intervertebal disk betwen", "mri"),
                       ("lef kidny uper pol", None), ("hipocampuss lft", None), ("gallbladdr stnes", "ct")],
        "empty": [("", None), ("   ", "ct"), ("\t\n", None), ("_-/", None)],
    }


def timed(fn: Callable[[str, "str | None"], object], queries: list[Query], rounds: int) -> list[tuple[float, Query]]:
    """(seconds, query) for every call; errors (UnknownPromptError) count as answers."""
    out = []
    for _ in range(rounds):
        for q, m in queries:
            t = time.perf_counter()
            try:
                fn(q, m)
            except Exception:
                pass
            out.append((time.perf_counter() - t, (q, m)))
    return out


def report(name: str, calls: list[tuple[float, Query]]) -> None:
    """One line: mean, p99 and max per call, and the query whose median time is the largest."""
    times = sorted(t for t, _ in calls)
    by_query: dict[Query, list[float]] = {}
    for t, q in calls:
        by_query.setdefault(q, []).append(t)
    (q, m), slow = max(by_query.items(), key=lambda kv: statistics.median(kv[1]))
    print(f"  {name:28s} mean {statistics.mean(times) * 1e6:7.1f}  p99 {times[int(len(times) * 0.99)] * 1e6:7.1f}"
          f"  max {times[-1] * 1e6:7.1f} us/call   slowest median {statistics.median(slow) * 1e6:7.1f} us"
          f" ({q[:20]!r}{'...' if len(q) > 20 else ''}, {m})")


def main() -> None:
    t = time.perf_counter()
    from SATSegmentLib import vocabulary
    from SATSegmentLib.vocabulary.matcher import index
    print(f"import SATSegmentLib.vocabulary: {(time.perf_counter() - t) * 1e3:.1f} ms")
    t = time.perf_counter()
    vocabulary.complete("pancraes", None)  # builds the alias index (and its tables) once
    vocabulary.complete("pancraes tumr", None)  # and the typo index
    print(f"first calls (index build): {(time.perf_counter() - t) * 1e3:.1f} ms")
    functions = {"complete": vocabulary.complete, "resolve": lambda q, m: vocabulary.resolve(q, m or "ct")}
    groups = worst_cases(index().vocab)
    for name, fn in functions.items():
        print(f"{name}:")
        report(f"realistic mix ({len(MIX)} queries)", timed(fn, MIX, 200))
        every = []
        for group, queries in groups.items():
            calls = timed(fn, queries, 5)
            report(f"{group} ({len(queries)})", calls)
            every += calls
        report("worst-case set, all", every)


if __name__ == "__main__":
    main()
