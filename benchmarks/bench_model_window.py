"""Time one full-size SAT window on this machine: backbone (`encode_image`) and prompt decoding.

Writes a random-weight model folder in the official layout (or reuses `--model`), loads it through
the real loader, runs one (1, 3, 288, 288, 96) window and prints seconds and peak RSS. Heavy
(~14 GB for SAT-Nano on CPU): run it as
    flock /tmp/heavy.lock env OMP_NUM_THREADS=2 python benchmarks/bench_model_window.py
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from SATSegmentLib.model import SATConfig, autocast, load_model_folder
from SATSegmentLib.model.testing import write_random_model_folder


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is in KiB on Linux


def timed(label: str, fn):
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    print(f"{label:<28s} {time.perf_counter() - start:8.2f} s   peak RSS {peak_rss_gb():6.2f} GB", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="nano", choices=["nano", "pro", "tiny"])
    parser.add_argument("--model", type=Path, help="existing model folder (default: write random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 50])
    args = parser.parse_args()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, variant {args.variant}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            folder = timed("write random model folder", lambda: write_random_model_folder(
                Path(tmp) / "model", SATConfig.for_variant(args.variant)))
        loaded = timed("load model folder", lambda: load_model_folder(folder, args.device, cache_dir=tmp))
        cfg = loaded.config
        print(f"window 1x3x{'x'.join(map(str, cfg.patch_size))}, device {loaded.device}, {args.precision}")
        image = torch.randn(1, 3, *cfg.patch_size, device=loaded.device)
        queries = timed(f"embed {max(args.prompts)} prompts (text enc.)",
                        lambda: loaded.embed([f"structure {i}" for i in range(max(args.prompts))], "ct"))
        with autocast(loaded.device, args.precision):
            features = timed("encode_image (backbone)", lambda: loaded.model.encode_image(image))
            print(f"  image features: {features.nbytes / 1024 ** 3:.2f} GB")
            for n in args.prompts:
                logits = timed(f"decode {n} prompt(s)", lambda: loaded.model.decode(features, queries[:n]))
                del logits


if __name__ == "__main__":
    main()
