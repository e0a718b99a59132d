"""`satsegment server`: MONAI Label started with the SATSegment app, with the options an administrator needs."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ..errors import InputError

APP_DIR = Path(__file__).resolve().parent / "app"
STOP_TIMEOUT = 30  # seconds a stopping server may take to finish the request it is answering


def add_parser(commands, megabytes) -> None:
    """The `server` subcommand's options (all passed on to `monailabel start_server`); `megabytes` parses sizes in MB."""
    p = commands.add_parser("server", help="serve SAT to a department with MONAI Label (needs satsegmentlib[server])",
                            description="Start MONAI Label with the SATSegment app (docs/server.md). Only clients that can "
                                        "reach HOST:PORT can use it; patient data go to it only from clients told its address.")
    p.add_argument("--studies", required=True, metavar="FOLDER_OR_URL",
                   help="datastore: a folder of scans, or a DICOMweb URL (e.g. http://pacs:8042/dicom-web)")
    p.add_argument("--models", default="nano", metavar="LIST",
                   help="models served, 'nano', 'nano,pro' or 'name=/model/folder' (default: nano); the first is the default")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only; "
                                                       "0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--max-memory", metavar="SIZE", help="memory cap of one job, e.g. 40GB (default: what is free)")
    p.add_argument("--feature-cache-mb", type=megabytes, metavar="MB",
                   help="host memory for cached backbone features across scans (default: 40%% of the RAM)")


def monailabel_command(args: argparse.Namespace, python: str = sys.executable) -> list[str]:
    """The `monailabel start_server` command line for `args`."""
    conf = {"models": args.models, "device": args.device, "max_memory": args.max_memory,
            "feature_cache_mb": None if args.feature_cache_mb is None else str(args.feature_cache_mb)}
    command = [python, "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", args.studies,
               "--host", args.host, "--port", str(args.port)]
    for key, value in conf.items():
        if value is not None:
            command += ["--conf", key, value]
    return command


def run(args: argparse.Namespace) -> int:
    """Run the server until it stops; returns its exit status."""
    if importlib.util.find_spec("monailabel") is None:
        raise InputError("MONAI Label is not installed in this Python.",
                         "Install the server in its own environment: pip install 'satsegmentlib[server]' (docs/server.md).")
    # DICOMweb series stay DICOM: SATSegment reads them itself (geometry, modality tag) instead of MONAI Label's NIfTI conversion
    env = {**os.environ, "MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI": os.environ.get("MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI", "false")}
    process = subprocess.Popen(monailabel_command(args), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM: stop the server cleanly, then its exit status
        process.terminate()
        try:
            return process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
