"""Benchmark the whole pipeline with full-size SAT-Nano (random weights) on a real CT.

Prints per-stage seconds (load, preprocess, backbone per window, decode, blend, map back, write), the
number of windows and the peak RSS, for 1 and 50 prompts, each in its own process so the peak RSS
of one run does not hide the other's. Heavy (about a minute per 288x288x96 window on a 2-core CPU, a
4-5 GB process with the default lean plan): run it alone, e.g.

    OMP_NUM_THREADS=2 flock /tmp/heavy.lock python benchmarks/bench_pipeline.py

Random weights make the masks meaningless but the work (and the memory) identical to the real model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "totalsegmentator-examples" / "example_ct.nii.gz"
TERMINOLOGY = REPO.parent / "shared" / "sat" / "terminology_list.json"


def model_folder(variant: str) -> Path:
    """A random-weight model folder in the official layout, written once into the user cache."""
    from SATSegmentLib.model import SATConfig
    from SATSegmentLib.model.loaded import default_cache_dir
    from SATSegmentLib.model.testing import write_random_model_folder

    folder = default_cache_dir() / f"bench-random-{variant}"
    if not (folder / "sat_config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_random_model_folder(folder, SATConfig.for_variant(variant), seed=0)
    return folder


def prompts(count: int) -> list[str]:
    try:
        terms = [t.split("_", 1)[1] for t in json.loads(TERMINOLOGY.read_text())["modality_based"]["ct"]]
    except (OSError, KeyError, ValueError):
        terms = [f"structure {i}" for i in range(count)]
    return terms[:count]


def run_once(image: Path, count: int, variant: str, device: str) -> dict:
    """One measured run in this process; returns the numbers as a dict."""
    from SATSegmentLib.pipeline import Segmenter

    folder = model_folder(variant)
    tic = time.perf_counter()
    segmenter = Segmenter(str(folder), device)
    load_model = time.perf_counter() - tic
    tic = time.perf_counter()
    terms = prompts(count)
    result = segmenter.segment(image, terms, "ct")
    total = time.perf_counter() - tic
    tic = time.perf_counter()
    write_segmentation(result, terms)
    write = time.perf_counter() - tic
    return {
        "prompts": count,
        "windows": len(result.processed.backbone_seconds),
        "processed_shape": list(result.grid.shape),
        "model_load_s": round(load_model, 2),
        **{f"{k}_s": round(v, 2) for k, v in result.timings.items()},
        "write_s": round(write, 2),
        "backbone_per_window_s": [round(s, 1) for s in result.processed.backbone_seconds],
        "total_s": round(total, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def write_segmentation(result, terms: list[str]) -> None:
    """Write the .seg.nrrd the command line would write (into a temporary folder), to time it."""
    import tempfile

    from SATSegmentLib.outputs import write_seg_nrrd
    from SATSegmentLib.outputs import segment_spec

    with tempfile.TemporaryDirectory() as folder:
        write_seg_nrrd(Path(folder) / "bench.seg.nrrd", result.masks, result.reference,
                       [segment_spec(t, t, "SAT-Nano (random weights)") for t in terms])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--variant", default="nano")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.image, args.prompts[0], args.variant, args.device)))
        return
    model_folder(args.variant)  # write the checkpoints before timing anything
    print(f"image {args.image.name}, SAT-{args.variant} (random weights), device {args.device}, "
          f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    rows = []
    for count in args.prompts:
        cmd = [sys.executable, __file__, "--child", "--image", str(args.image), "--prompts", str(count),
               "--variant", args.variant, "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) >= 2:
        print(f"peak RSS ratio {rows[-1]['prompts']} vs {rows[0]['prompts']} prompts: "
              f"{rows[-1]['peak_rss_gb'] / rows[0]['peak_rss_gb']:.2f}")


if __name__ == "__main__":
    main()
