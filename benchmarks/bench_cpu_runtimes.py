"""Side-by-side CPU runtimes for SAT-Nano's backbone (`encode_image`) on one full-size window.

Random weights (`random_models(SATConfig.nano())`), one (1, 3, 288, 288, 96) fp32 window, 2 threads.
Each variant runs in its own process; it reports prep (export/trace/compile) seconds, the 1st and
2nd call, peak RSS, and exactness against the `torch` variant: max |diff| of `pixel` and `tokens`
and the Dice of 8 random prompts decoded by `model.decode` (sigmoid > 0.5) from both feature sets.

  torch              PyTorch as the pipeline runs it (fp32, NCDHW, inference_mode): the reference
  torch-lean         SATSegment's lean plan (model/lean.py: channels-last row slabs, in place; the default on CPU)
  torch-cl           model and input in channels_last_3d
  torch-cl-bf16conv  channels_last_3d + torch.backends.mkldnn.conv.fp32_precision='bf16' (reduced precision)
  torch-jit          torch.jit.trace + freeze + optimize_for_inference
  torch-compile      torch.compile, inductor CPU backend, inductor freezing on
  onnx-export        prep only: export the backbone to /tmp/runtimes/nano/backbone.onnx (+ .data)
  onnxrt             ONNX Runtime, CPU EP, 2 intra-op threads, ORT_ENABLE_ALL (needs > 24 GB)
  onnxrt-lowmem      the same without the CPU memory arena and memory-pattern pre-planning
  ov-f32, ov-bf16    OpenVINO CPU (read from the ONNX file), LATENCY hint, 1 stream, 2 threads,
                     INFERENCE_PRECISION_HINT f32 / bf16
  ov-f32-accuracy    ov-f32 with EXECUTION_MODE_HINT ACCURACY

Heavy (10-14 GB RSS, 1-3 min per window). Everything, one locked process per variant (~60 min):
    PYTHONPATH=. python benchmarks/bench_cpu_runtimes.py --variant all
One variant (`torch` first: it writes the reference; `onnx-export` before onnxrt/ov-*):
    flock /tmp/heavy.lock env OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_cpu_runtimes.py --variant onnxrt
The table of stored results: python benchmarks/bench_cpu_runtimes.py --table
A seconds-long smoke test of the script: add `--config tiny` (results under /tmp/runtimes/tiny).
Non-PyTorch variants need `pip install onnx onnxscript onnxruntime openvino`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from SATSegmentLib.model import SATConfig
from SATSegmentLib.model.plans import BackbonePlan
from SATSegmentLib.model.sat import ImageFeatures, SATModel
from SATSegmentLib.model.testing import random_models

CONFIG = SATConfig.nano()  # --config tiny: a seconds-long smoke test of the script itself
WORK = Path("/tmp/runtimes/nano")
LOCK = "/tmp/heavy.lock"
VARIANTS = ["torch", "torch-lean", "torch-cl", "torch-cl-bf16conv", "torch-jit", "torch-compile",
            "onnx-export", "onnxrt", "onnxrt-lowmem", "ov-f32", "ov-bf16",
            "ov-f32-accuracy"]
THREADS, PROMPTS = 2, 8
Runner = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


class Backbone(nn.Module):
    """`encode_image` as a module returning plain tensors (tokens, pixel), for tracing and export."""

    def __init__(self, model: SATModel) -> None:
        super().__init__()
        self.model = model
        self.train(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.encode_image(x)
        return features.tokens, features.pixel


def build_model() -> SATModel:
    """SAT-Nano with the seeded random weights every variant shares."""
    model, text = random_models(CONFIG, seed=0)
    del text
    return model


def make_window() -> torch.Tensor:
    """The fixed-seed (1, 3, 288, 288, 96) input window."""
    return torch.randn(1, 3, *CONFIG.patch_size, generator=torch.Generator().manual_seed(1234))


def setup_torch(variant: str, x: torch.Tensor) -> tuple[Runner, SATModel, dict]:
    """A PyTorch runner for `variant` (the prep work happens here and is timed by the caller)."""
    model, notes = build_model(), {}
    convert: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    if variant.startswith("torch-cl"):
        model = model.to(memory_format=torch.channels_last_3d)
        convert = lambda t: t.contiguous(memory_format=torch.channels_last_3d)
        if variant == "torch-cl-bf16conv":
            torch.backends.mkldnn.conv.fp32_precision = "bf16"
            notes["mkldnn.conv.fp32_precision"] = torch.backends.mkldnn.conv.fp32_precision
    if variant in ("torch", "torch-lean"):
        plan = BackbonePlan.lean() if variant == "torch-lean" else None
        return (lambda t: (lambda f: (f.tokens, f.pixel))(model.encode_image(t, plan))), model, notes
    module: nn.Module = Backbone(model)
    if variant == "torch-jit":
        with torch.no_grad():
            traced = torch.jit.trace(module, x, check_trace=False).eval()  # runs one full forward
            module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        notes["prep"] = "trace (one forward) + freeze + optimize_for_inference"
    elif variant == "torch-compile":
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
        module = torch.compile(module, backend="inductor")
        notes["prep"] = "compilation happens inside the 1st call"
    return (lambda t: module(convert(t))), model, notes


def setup_onnxrt(low_memory: bool) -> tuple[Runner, None, dict]:
    """An ONNX Runtime CPU session on the exported backbone (optionally without arena/memory pattern)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = options.enable_mem_pattern = not low_memory
    session = ort.InferenceSession(str((WORK / "backbone.onnx")), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, pixel = session.run(None, {name: t.numpy()})
        return torch.from_numpy(tokens), torch.from_numpy(pixel)
    return run, None, {"providers": session.get_providers()}


def setup_openvino(precision: str, accuracy: bool) -> tuple[Runner, None, dict]:
    """An OpenVINO CPU model compiled for one low-latency inference at `precision` ('f32' or 'bf16')."""
    import openvino as ov
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(THREADS),
              "INFERENCE_PRECISION_HINT": precision, "EXECUTION_MODE_HINT": "ACCURACY" if accuracy else "PERFORMANCE"}
    compiled = core.compile_model(core.read_model(str((WORK / "backbone.onnx"))), "CPU", config)
    request = compiled.create_infer_request()
    notes = {key: str(compiled.get_property(key)) for key in config}

    def run(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = request.infer({0: t.numpy()}, share_inputs=True, share_outputs=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # outputs are read-only views of OpenVINO's buffers
            return torch.from_numpy(result[0]), torch.from_numpy(result[1])
    return run, None, notes


def export_onnx(x: torch.Tensor) -> dict:
    """Export the backbone at the fixed window shape; try the dynamo exporter, then the TorchScript one."""
    model, notes = build_model(), {}
    for dynamo in (True, False):
        try:
            with torch.no_grad():
                torch.onnx.export(Backbone(model), (x,), str((WORK / "backbone.onnx")), input_names=["image"],
                                  output_names=["tokens", "pixel"], dynamo=dynamo)
            notes["exporter"] = "dynamo" if dynamo else "torchscript"
            return notes
        except Exception as exc:  # record why, then try the other exporter
            notes[f"dynamo={dynamo} failed"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
    raise RuntimeError(f"both ONNX exporters failed: {notes}")


def masks_and_dice(model: SATModel, tokens: torch.Tensor, pixel: torch.Tensor,
                   ref_masks: torch.Tensor | None) -> tuple[torch.Tensor, list[float], list[int]]:
    """Decode PROMPTS fixed random queries; masks (N, H, W, D) and per-prompt Dice/flips vs `ref_masks`."""
    queries = torch.randn(PROMPTS, model.config.query_dim, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        masks = model.decode(ImageFeatures(tokens, model.key_pos, pixel), queries)[0] > 0  # sigmoid > 0.5
    ref = masks if ref_masks is None else ref_masks
    inter, total = (masks & ref).sum((1, 2, 3)), masks.sum((1, 2, 3)) + ref.sum((1, 2, 3))
    dice = [1.0 if int(s) == 0 else 2 * int(i) / int(s) for i, s in zip(inter, total)]
    return masks, dice, [int(v) for v in (masks ^ ref).sum((1, 2, 3))]


def run_variant(variant: str, calls: int) -> dict:
    """Run one variant in this process and return its measurements."""
    torch.set_num_threads(THREADS)
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict = {"variant": variant, "load": os.getloadavg()[0], "torch_threads": torch.get_num_threads()}
    x = make_window()
    start = time.perf_counter()
    if variant == "onnx-export":
        result["notes"] = export_onnx(x)
        result.update(prep_s=time.perf_counter() - start, peak_rss_gb=peak_rss_gb())
        return result
    if variant.startswith("torch"):
        run, model, notes = setup_torch(variant, x)
    elif variant.startswith("onnxrt"):
        run, model, notes = setup_onnxrt(variant == "onnxrt-lowmem")
    else:
        run, model, notes = setup_openvino(variant.split("-")[1], variant.endswith("-accuracy"))
    result.update(prep_s=time.perf_counter() - start, notes=notes, call_s=[], cpu_s=[])
    with torch.inference_mode():
        out = None
        for _ in range(calls):
            out = None  # free the previous call's features first
            start, cpu = time.perf_counter(), time.process_time()
            out = run(x)
            result["call_s"].append(time.perf_counter() - start)
            result["cpu_s"].append(time.process_time() - cpu)  # all threads; less sensitive to other load
    result["peak_rss_gb"] = peak_rss_gb()  # before anything needed only for the comparison
    tokens, pixel = (t.contiguous() for t in out)
    del out, run
    model = model.to(memory_format=torch.contiguous_format) if model is not None else build_model()
    if variant == "torch":
        masks, dice, flips = masks_and_dice(model, tokens, pixel, None)
        torch.save({"tokens": tokens, "pixel": pixel, "masks": masks}, WORK / "reference.pt")
        result.update(diff_pixel=0.0, diff_tokens=0.0, dice=dice, flips=flips)
    else:
        ref = torch.load(WORK / "reference.pt", mmap=True)
        result["diff_pixel"] = float((pixel - ref["pixel"]).abs().max())
        result["diff_tokens"] = float((tokens - ref["tokens"]).abs().max())
        _, result["dice"], result["flips"] = masks_and_dice(model, tokens, pixel, ref["masks"])
    result["max_abs_pixel"] = float(pixel.abs().max())
    return result


def print_table() -> None:
    """Print the stored results of every variant, with speed and memory relative to `torch`."""
    rows = {v: json.loads((WORK / f"{v}.json").read_text()) for v in VARIANTS if (WORK / f"{v}.json").exists()}
    base = rows.get("torch", {})
    base_s = (base.get("call_s") or [None])[-1]
    header = (f"{'variant':<18} {'load':>5} {'prep s':>8} {'1st s':>8} {'2nd s':>8} {'x torch':>7} {'RSS GB':>7} "
              f"{'cpu s':>7} {'max|dpix|':>9} {'max|dtok|':>9} {'min Dice':>9} {'flips':>7}")
    print(header + "\n" + "-" * len(header))
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<18} {r.get('load', 0):5.2f} FAILED: {r['error']}")
            continue
        calls = r.get("call_s", [])
        prep = r["prep_s"] + (rows.get("onnx-export", {}).get("prep_s", 0) if name.startswith(("onnxrt", "ov-"))
                              else 0)
        cells = [f"{c:8.1f}" for c in calls[:2]] + ["       -"] * (2 - len(calls[:2]))
        speed = f"{base_s / calls[-1]:7.2f}" if calls and base_s else "      -"
        if "dice" in r:
            exact = (f"{r['diff_pixel']:9.2e} {r['diff_tokens']:9.2e} {min(r['dice']):9.6f} "
                     f"{sum(r['flips']):7d}")
        else:
            exact = f"{'-':>9} {'-':>9} {'-':>9} {'-':>7}"
        print(f"{name:<18} {r['load']:5.2f} {prep:8.1f} {' '.join(cells)} {speed} {r['peak_rss_gb']:7.2f} "
              f"{(r.get('cpu_s') or [float('nan')])[-1]:7.1f} {exact}")
    for name, r in rows.items():
        if r.get("notes"):
            print(f"  {name}: {r['notes']}")
    print("prep of onnxrt/ov-* includes the ONNX export; 'x torch' = torch 2nd call / variant 2nd call; "
          "'cpu s' = process CPU time of the 2nd call; "
          "'flips' = mask voxels that differ from torch, summed over prompts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS + ["all"], help="one variant (in this process) or all")
    parser.add_argument("--calls", type=int, default=2, help="timed backbone calls per variant")
    parser.add_argument("--table", action="store_true", help="only print the stored results")
    parser.add_argument("--config", default="nano", choices=["nano", "tiny"], help="tiny: smoke test only")
    args = parser.parse_args()
    global CONFIG, WORK
    CONFIG, WORK = SATConfig.for_variant(args.config), Path("/tmp/runtimes") / args.config
    if args.table or args.variant is None:
        print_table()
        return
    if args.variant == "all":
        for variant in VARIANTS:
            print(f"== {variant}: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}",
                  flush=True)
            load = os.getloadavg()[0]
            cmd = ["flock", LOCK, "env", f"OMP_NUM_THREADS={THREADS}", sys.executable, __file__,
                   "--variant", variant, "--calls", str(args.calls), "--config", args.config]
            proc = subprocess.run(cmd)
            if proc.returncode and not (WORK / f"{variant}.json").exists():
                reason = f"process exited with {proc.returncode}" + (" (killed, likely out of memory)"
                                                                      if proc.returncode in (-9, 137) else "")
                (WORK / f"{variant}.json").write_text(json.dumps({"variant": variant, "error": reason, "load": load}))
        print_table()
        return
    out_file = WORK / f"{args.variant}.json"
    WORK.mkdir(parents=True, exist_ok=True)
    out_file.unlink(missing_ok=True)
    try:
        result = run_variant(args.variant, args.calls)
    except Exception as exc:
        traceback.print_exc()
        result = {"variant": args.variant, "load": os.getloadavg()[0],
                  "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    out_file.write_text(json.dumps(result, indent=1))
    print(json.dumps(result), flush=True)
    sys.exit(1 if "error" in result else 0)


if __name__ == "__main__":
    main()
