"""Cold `satsegment segment` vs the worker's first request vs a follow-up with 3 new prompts on the same volume.

Full-size SAT-Nano (or `--variant pro`) with random weights (the released weights cannot be downloaded here; the compute is
the same), CPU, the TotalSegmentator example CT. Goal: the follow-up costs under 5 % of the first request,
because the worker reuses the preprocessed volume and the backbone features (only the cheap decoder runs).

    OMP_NUM_THREADS=2 flock /tmp/heavy.lock python benchmarks/bench_server.py [--feature-cache-mb MB]
    OMP_NUM_THREADS=2 flock /tmp/heavy.lock python benchmarks/bench_server.py --variant pro --skip-cold --first-only

The feature cache must hold every window's features (about 2 GB per 288x288x96 window for SAT-Nano in
fp32; example_ct has 4 windows) or the follow-up recomputes the windows that did not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "totalsegmentator-examples" / "example_ct.nii.gz"
FIRST_PROMPTS = ["liver"]
FOLLOW_UP_PROMPTS = ["spleen", "left kidney", "aorta"]


def make_model(folder: Path, variant: str) -> Path:
    """A full-size model folder of `variant` with random weights in the official layout."""
    from SATSegmentLib.model import SATConfig
    from SATSegmentLib.model.testing import write_random_model_folder

    if not (folder / "sat_config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_random_model_folder(folder, SATConfig.for_variant(variant), seed=0)
    return folder


def cold_run(image: Path, model: Path, out: Path) -> float:
    """Wall time of one `satsegment segment` process (start-up, model load, whole job)."""
    command = [sys.executable, "-m", "SATSegmentLib", "segment", str(image), *sum((["-p", p] for p in FIRST_PROMPTS), []),
               "--modality", "ct", "--model", str(model), "--device", "cpu", "--progress", "none", "--overwrite",
               "-o", str(out / "cold.seg.nrrd")]
    tic = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - tic


class Worker:
    def __init__(self, feature_cache_mb: float | None) -> None:
        cap = [] if feature_cache_mb is None else ["--feature-cache-mb", str(feature_cache_mb)]
        self.proc = subprocess.Popen([sys.executable, "-m", "SATSegmentLib", "serve", *cap],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def request(self, message: dict) -> tuple[dict, float]:
        """Send a request and wait for its final reply; returns it and the wall time."""
        tic = time.perf_counter()
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            event = json.loads(line)
            if event.get("id") == message["id"] and event["event"] in ("result", "error", "cancelled", "pong", "bye"):
                return event, time.perf_counter() - tic
        raise RuntimeError("the worker exited")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--variant", default="nano", choices=["nano", "pro"])
    parser.add_argument("--model-dir", type=Path, help="default: a random-weight model folder in the temp folder")
    parser.add_argument("--feature-cache-mb", type=float, default=None,
                        help="the worker's feature-cache cap (default: the worker's own default, 40%% of the RAM)")
    parser.add_argument("--skip-cold", action="store_true", help="only measure the worker")
    parser.add_argument("--first-only", action="store_true", help="only the worker's first request (a whole scan through the worker)")
    args = parser.parse_args()
    model = make_model(args.model_dir or Path(tempfile.gettempdir()) / f"satsegment-bench-{args.variant}", args.variant)
    out = Path(tempfile.mkdtemp(prefix="satsegment-bench-"))
    figures: dict = {"variant": args.variant, "image": str(args.image), "threads": os.environ.get("OMP_NUM_THREADS"), "feature_cache_mb": args.feature_cache_mb}
    if not args.skip_cold:
        figures["cold_segment_s"] = round(cold_run(args.image, model, out), 1)
        print(f"cold `satsegment segment` ({len(FIRST_PROMPTS)} prompt): {figures['cold_segment_s']} s", flush=True)
    worker = Worker(args.feature_cache_mb)
    _, figures["worker_start_s"] = worker.request({"type": "ping", "id": "ping"})
    options = {"model": str(model), "device": "cpu", "overwrite": True}
    requests = (("first", FIRST_PROMPTS),) if args.first_only else (("first", FIRST_PROMPTS), ("follow_up", FOLLOW_UP_PROMPTS))
    for key, prompts in requests:
        reply, seconds = worker.request({"type": "segment", "id": key, "input": str(args.image), "prompts": prompts,
                                         "output": str(out / f"{key}.seg.nrrd"), "modality": "ct", "options": options})
        if reply["event"] != "result":
            raise SystemExit(f"{key} request failed: {reply}")
        figures[f"{key}_request_s"] = round(seconds, 1)
        figures[f"{key}_timings"] = reply["timings"]
        figures[f"{key}_cache"] = reply["cache"]
        print(f"worker {key} request ({len(prompts)} prompts): {seconds:.1f} s  cache={reply['cache']}  "
              f"memory={reply['memory']}  timings={reply['timings']}", flush=True)
    worker.request({"type": "shutdown", "id": "bye"})
    worker.proc.wait(timeout=120)
    figures["peak_rss_gb_children"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)
    if not args.first_only:
        figures["follow_up_over_first"] = round(figures["follow_up_request_s"] / figures["first_request_s"], 4)
    print(json.dumps(figures, indent=2))
    if not args.first_only:
        print(f"follow-up / first = {figures['follow_up_over_first']:.1%} (goal < 5 %)")


if __name__ == "__main__":
    main()
