"""One full-size SAT window per backbone plan, side by side: seconds, memory, the estimator's figure, exactness.

Each (variant, plan, precision) runs in its own child process, so peak RSS belongs to that run alone.
The model has random weights in the exact architecture; the window is the first 288x288x96 window of the
real example CT after SAT's preprocessing (`--input random`: a fixed-seed random input). Printed per run: backbone seconds (1st and 2nd call), decode seconds for 1 and 50 prompts,
peak RSS of the child (CPU) or `torch.cuda.max_memory_allocated` (CUDA) up to the end of the backbone
(weights, window and backbone; the 50-prompt decode's logits are not the pipeline's chunked decoding),
the estimator's prediction for the run (`model.memory.estimate_run`), and, against the first plan listed, max |Δ logits| and the minimum Dice
of 8 prompts' masks. Heavy (up to ~11 GB RSS for SAT-Nano's plain plan on CPU); run it alone:

    flock /tmp/heavy.lock env OMP_NUM_THREADS=2 python benchmarks/bench_model_window.py --variant nano
    flock /tmp/heavy.lock env OMP_NUM_THREADS=2 python benchmarks/bench_model_window.py --variant pro --plans lean
    python benchmarks/bench_model_window.py --device cuda --variant nano pro --precision fp16 fp32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/satsegment-bench-window")
EXAMPLE_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalsegmentator-examples" / "example_ct.nii.gz"
PLANS = {"plain": "plain", "lean": "lean"}


def real_window(patch: tuple[int, int, int]):
    """The first window of the example CT as SAT sees it: preprocessed, zero-padded at the end, 3 channels."""
    import numpy as np
    import torch

    from SATSegmentLib.imageio import read_image
    from SATSegmentLib.preprocess import preprocess

    image, meta = read_image(EXAMPLE_CT)
    array = preprocess(image, "ct", ras_affine=meta.get("ras_affine")).array
    window = np.zeros(patch, np.float32)
    part = array[:patch[0], :patch[1], :patch[2]]
    window[:part.shape[0], :part.shape[1], :part.shape[2]] = part
    return torch.from_numpy(window)[None, None].repeat(1, 3, 1, 1, 1)


def child(variant: str, plan_name: str, precision: str, device: str, reference: str | None, real: bool = True) -> dict:
    """Run one window in this process and return the measurements."""
    import torch

    from SATSegmentLib.model import SATConfig, autocast
    from SATSegmentLib.model.memory import estimate_run
    from SATSegmentLib.model.plans import PLAIN, BackbonePlan
    from SATSegmentLib.model.sat import SATModel

    config = SATConfig.for_variant(variant)
    plan = PLAIN if plan_name == "plain" else BackbonePlan.lean()
    device = torch.device(device)
    torch.manual_seed(0)
    with torch.device("meta"):
        model = SATModel(config)
    model = model.to_empty(device=device)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # small random weights: activations stay in range at every depth
            p.copy_((torch.randn(p.shape, generator=generator) * (1.0 / max(1, p[0].numel()) ** 0.5)).to(device))
    model.reset_positional_encoding()
    model.eval()
    x = (real_window(config.patch_size) if real else
         torch.randn(1, 3, *config.patch_size, generator=torch.Generator().manual_seed(1))).to(device)
    queries = torch.randn(50, config.query_dim, generator=torch.Generator().manual_seed(2)).to(device)
    result = {"variant": variant, "plan": str(plan), "precision": precision, "device": str(device),
              "estimate_gb": estimate_run(config, plan, device.type, precision, 50).needed / 1e9}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        result["gpu"] = torch.cuda.get_device_name(device)
    with torch.inference_mode(), autocast(device, precision):
        seconds = []
        for _ in range(2):
            features = None
            _sync(device)
            tic = time.perf_counter()
            features = model.encode_image(x, plan)
            _sync(device)
            seconds.append(time.perf_counter() - tic)
        result["backbone_s"] = seconds
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # before decoding
        if device.type == "cuda":
            result["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        for n in (1, 50):  # decode all at once (the pipeline decodes in chunks, blending as it goes)
            tic = time.perf_counter()
            logits = model.decode(features, queries[:n])
            _sync(device)
            result[f"decode_{n}_s"] = time.perf_counter() - tic
        logits = model.decode(features, queries[:8]).float().cpu()
    WORK.mkdir(parents=True, exist_ok=True)
    mine = WORK / f"{variant}-{plan_name}-{precision}-{device.type}.pt"
    torch.save(logits, mine)
    if reference:
        ref = torch.load(reference)
        result["max_abs_logits_vs_reference"] = float((logits - ref).abs().max())
        a, b = logits > 0, ref > 0
        dice = 2 * (a & b).sum((1, 2, 3, 4)) / (a.sum((1, 2, 3, 4)) + b.sum((1, 2, 3, 4))).clamp(min=1)
        result["min_dice_vs_reference"] = float(dice.min())
    result["logits_file"] = str(mine)
    return result


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", nargs="+", default=["nano"], choices=["nano", "pro", "tiny"])
    parser.add_argument("--plans", nargs="+", default=["plain", "lean"], choices=list(PLANS),
                        help="the first one is the reference for exactness")
    parser.add_argument("--precision", nargs="+", default=None, help="default: fp32 on CPU, fp16 and fp32 on CUDA")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input", default="real", choices=["real", "random"], help="the example CT's first window, or noise")
    parser.add_argument("--child", nargs=6, metavar=("VARIANT", "PLAN", "PRECISION", "DEVICE", "REFERENCE", "INPUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, plan, precision, device, reference, given = args.child
        print(json.dumps(child(variant, plan, precision, device, reference if reference != "-" else None, given == "real")))
        return
    precisions = args.precision or (["fp16", "fp32"] if args.device.startswith("cuda") else ["fp32"])
    rows = []
    for variant in args.variant:
        for precision in precisions:
            reference = "-"
            for plan in args.plans:
                done = subprocess.run([sys.executable, __file__, "--child", variant, plan, precision, args.device,
                                       reference, args.input], capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{variant} {plan} {precision}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                reference = reference if reference != "-" else row["logits_file"]
                rows.append(row)
                _print_row(row)
    _print_machine()


def _print_row(row: dict) -> None:
    memory = (f"max_memory_allocated {row['max_memory_allocated_gb']:.2f} GB" if "max_memory_allocated_gb" in row
              else f"peak RSS {row['peak_rss_gb']:.2f} GB")
    exact = (f", vs first plan: max|Δlogits| {row['max_abs_logits_vs_reference']:.1e}, "
             f"min Dice {row['min_dice_vs_reference']:.6f}" if "min_dice_vs_reference" in row else "")
    print(f"{row['variant']:5s} {row['plan']:20s} {row['precision']} {row['device']}: backbone "
          f"{row['backbone_s'][0]:.1f} s / {row['backbone_s'][1]:.1f} s (1st/2nd), decode 1/50 prompts "
          f"{row['decode_1_s']:.2f}/{row['decode_50_s']:.2f} s, {memory}, estimate {row['estimate_gb']:.2f} GB{exact}",
          flush=True)


def _print_machine() -> None:
    import platform

    import torch

    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
        flags = f"{model}; " + " ".join(f for f in wanted if f" {f} " in cpuinfo)
    except (OSError, StopIteration):
        pass
    print(f"machine: {platform.machine()}, {flags}, torch {torch.__version__}, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
