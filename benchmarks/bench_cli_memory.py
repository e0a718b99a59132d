"""Peak RSS of a whole `satsegment segment` process on a one-window scan, with and without `--max-memory`.

Writes a random-weight model folder in the official layout (cached under /tmp between runs) and a
one-window crop of the example CT (288×288×96 after SAT's resampling at most), then runs the real
command line under `/usr/bin/time -v` and prints wall time and maximum resident set size. Heavy:

    flock /tmp/heavy.lock env OMP_NUM_THREADS=2 python benchmarks/bench_cli_memory.py --variant nano --max-memory 4.5GB
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO.parent / "shared" / "data" / "totalsegmentator-examples" / "example_ct.nii.gz"
WORK = Path("/tmp/satsegment-bench-cli")


def model_folder(variant: str) -> Path:
    from SATSegmentLib.model import SATConfig
    from SATSegmentLib.model.testing import write_random_model_folder

    folder = WORK / f"model-{variant}"
    if not (folder / "sat_config.json").is_file():
        write_random_model_folder(folder, SATConfig.for_variant(variant))
    return folder


def one_window_scan() -> Path:
    """The example CT cut to at most 280 × 280 × 285 mm, so SAT's 1×1×3 mm grid fits one 288×288×96 window."""
    import SimpleITK as sitk

    path = WORK / "one_window_ct_v2.nii.gz"
    if not path.is_file():
        image = sitk.ReadImage(str(EXAMPLE))
        size = [min(n, int(limit / s)) for n, s, limit in zip(image.GetSize(), image.GetSpacing(), (280, 280, 285))]
        sitk.WriteImage(image[: size[0], : size[1], : size[2]], str(path))
    return path


def run(variant: str, max_memory: str | None, prompts: int) -> dict:
    scan, folder = one_window_scan(), model_folder(variant)
    out = WORK / "out.seg.nrrd"
    argv = [sys.executable, "-m", "SATSegmentLib", "segment", str(scan), "--modality", "ct", "--model", str(folder),
            "-o", str(out), "--overwrite", "--device", "cpu", "--progress", "json"]
    from SATSegmentLib import vocabulary

    for term in [t.term for t in vocabulary.terms("ct")][:prompts]:
        argv += ["-p", term]
    if max_memory:
        argv += ["--max-memory", max_memory]
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", done.stderr).group(1)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    last = events[-1] if events else {}
    return {"max_memory": max_memory, "exit": done.returncode, "peak_rss_gb": rss_kb / 1024**2, "wall": wall,
            "windows": last.get("cache", {}).get("backbone_windows_computed"), "memory": last.get("memory"),
            "error": last.get("message") if last.get("event") == "error" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="nano", choices=["nano", "pro", "tiny"])
    parser.add_argument("--max-memory", nargs="*", default=["4.5GB", None])
    parser.add_argument("--prompts", type=int, default=4)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for limit in args.max_memory:
        result = run(args.variant, limit, args.prompts)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
