"""Bounded load on the SATSegment MONAI Label server: 8 clients x 10 requests, tiny model, 127.0.0.1.

Prints throughput, p50/p95 latency, and checks that every request got exactly one answer, that each answer
is the one for its own request (label names, and the label image equal to the same request run alone), and
that no answer was lost. The server runs one job at a time, turns round-robin across the clients; latency
therefore grows with the number of clients.

    python benchmarks/bench_monailabel.py [--clients 8] [--requests 10]

Needs MONAI Label (`bash .ci/server-env`, or SATSEGMENT_SERVER_PYTHON).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SATSegment"))
sys.path.insert(0, str(REPO))

from SATSegmentLib.labelserver.testing import LabelServer, server_python  # noqa: E402
from SATSegmentLib.model import SATConfig  # noqa: E402
from SATSegmentLib.model.testing import write_random_model_folder  # noqa: E402
from SATSegmentSlicerLib.remote import LabelServerClient  # noqa: E402

# Distinct requests the clients cycle through: (image id, modality, prompts, expected label names).
CASES = [("ct", "ct", ["liver"], ["liver"]), ("ct", "ct", ["spleen", "L kidney"], ["spleen", "left kidney"]),
         ("ct", "ct", ["aorta"], ["aorta"]), ("mr", "mri", ["hepar"], ["liver"]),
         ("mr", "mri", ["pancreas", "spleen"], ["pancreas", "spleen"]), ("mr", "pet", ["lymph node"], ["lymph node"])]


def write_scans(studies: Path) -> None:
    """A CT-like and an MR-like scan (the shapes the tests use), written as the datastore's 'ct' and 'mr'."""
    z, y, x = np.indices((16, 48, 56))
    body = ((y - 24) ** 2 / 20 ** 2 + (x - 28) ** 2 / 23 ** 2) < 1
    rng = np.random.default_rng(0)
    for name, inside, outside in (("ct", 40, -1000), ("mr", 900, 0)):
        array = np.where(body, inside, outside).astype(np.float32) + rng.normal(0, 10, body.shape)
        image = sitk.GetImageFromArray(array.astype(np.int16))
        image.SetSpacing((1.5, 1.5, 3.0))
        sitk.WriteImage(image, str(studies / f"{name}.nii.gz"))


def digest(result) -> str:
    with tempfile.TemporaryDirectory() as folder:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(result.save(folder))))
    return hashlib.sha256(array.tobytes()).hexdigest()


def one(client: LabelServerClient, case: int):
    image, modality, prompts, _ = CASES[case]
    return client.segment(prompts, modality, image_id=image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    python = server_python()
    if python is None:
        sys.exit("MONAI Label is not installed: run `bash .ci/server-env` or set SATSEGMENT_SERVER_PYTHON")
    with tempfile.TemporaryDirectory(prefix="bench-monailabel-") as tmp:
        root = Path(tmp)
        (root / "studies").mkdir()
        write_scans(root / "studies")
        model = write_random_model_folder(root / "tiny", SATConfig.tiny(), seed=0)
        server = LabelServer(python, root, root / "studies", f"tiny={model}")
        try:
            return run_load(server, args.clients, args.requests)
        finally:
            server.stop()


def run_load(server: LabelServer, clients: int, requests: int) -> int:
    reference = {case: digest(one(LabelServerClient(server.url), case)) for case in range(len(CASES))}  # each alone, warm
    answers: dict[tuple[int, int], list] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def client_loop(c: int) -> None:
        client = LabelServerClient(server.url, timeout=3600, client_id=f"bench-client-{c}")  # each its own turns
        for i in range(requests):
            case = (c + i) % len(CASES)
            tic = time.perf_counter()
            try:
                result = one(client, case)
                answer = (case, result.label_names, digest(result))
            except Exception as exc:  # noqa: BLE001 - recorded and counted as a wrong answer
                answer = (case, repr(exc), None)
            with lock:
                latencies.append(time.perf_counter() - tic)
                answers.setdefault((c, i), []).append(answer)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    tic = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - tic
    expected = {(c, i) for c in range(clients) for i in range(requests)}
    once = all(len(answers.get(key, [])) == 1 for key in expected) and set(answers) == expected
    wrong = [key for key, got in answers.items() for case, names, sha in got
             if names != {n: v for v, n in enumerate(CASES[case][3], 1)} or sha != reference[case]]
    total = clients * requests
    print(f"{clients} clients x {requests} requests = {total} on 127.0.0.1, tiny model, CPU")
    print(f"wall {wall:.1f} s, throughput {total / wall:.2f} requests/s")
    print(f"latency p50 {statistics.median(latencies):.2f} s, p95 {np.percentile(latencies, 95):.2f} s, max {max(latencies):.2f} s")
    print(f"every request answered exactly once: {once}; wrong or mixed-up answers: {len(wrong)}")
    return 0 if once and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
