"""`satsegment`: segment scans from the command line, browse SAT's vocabulary, manage models, run the worker.

Heavy modules (torch, the model, SimpleITK) are imported only by the subcommands that need them,
so `satsegment --help` and `satsegment terms` start fast. Exit codes come from `errors`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Iterator, Sequence, TextIO

from . import __version__
from .errors import CancelledError, InputError, SATSegmentError

EPILOG = ("Exit codes: 0 ok, 1 internal error, 2 bad input, 3 unknown prompt, 4 model missing or corrupt, "
          "5 out of memory, 6 download failed, 7 device unavailable, 130 cancelled (Ctrl+C or SIGTERM).")
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a Unix tool whose reader went away


MAX_MEMORY_HELP = ("memory the run may use on its device (GPU memory on CUDA, RAM on CPU), e.g. 4.5GB or 3GiB; "
                   "default: what is free. The fastest plan that fits is chosen; runs that cannot fit are refused")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="satsegment", description="Text-prompted 3D segmentation of CT, MRI and PET scans with SAT.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_segment(commands)
    _add_terms(commands)
    _add_models(commands)
    serve = commands.add_parser("serve", help="run the persistent JSON-lines worker on stdin/stdout",
                                description="Persistent worker speaking JSON lines on stdin/stdout (docs/worker-protocol.md). "
                                            "Keeps the model loaded, the last volume's preprocessing and recent volumes' backbone features.",
                                epilog=EPILOG)
    serve.add_argument("--feature-cache-mb", type=megabytes, default=None, metavar="MB",
                       help="memory cap for cached backbone features of recent volumes (default: 40%% of the RAM; 0 disables)")
    serve.add_argument("--max-memory", metavar="SIZE", help=MAX_MEMORY_HELP + " (for every job that sets no max_memory)")
    from .labelserver import command as server_command

    server_command.add_parser(commands, megabytes)
    return parser


def _add_segment(commands) -> None:
    p = commands.add_parser("segment", help="segment structures named by text prompts in a scan",
                            description="Segment the structures named by the prompts and write a Slicer .seg.nrrd "
                                        "on the input's grid (one segment per prompt).", epilog=EPILOG)
    p.add_argument("input", metavar="INPUT", help="NIfTI, NRRD or MHA file, or a folder with one DICOM series")
    p.add_argument("-p", "--prompt", action="append", default=[], metavar="TEXT",
                   help="structure to segment, e.g. liver or 'left kidney' (repeat for several)")
    p.add_argument("--prompts-file", metavar="FILE",
                   help="structure list: one name per line ('#' starts a comment), names separated by ',' or ';', "
                        "or a CSV structure-template export with a 'Structure', 'ROI Name' or 'Name' column")
    p.add_argument("-o", "--output", metavar="OUT.seg.nrrd",
                   help="output segmentation file (.seg.nrrd); optional when --dicom-seg or --rtstruct is given")
    p.add_argument("--dicom-seg", metavar="OUT.dcm", help="also write a DICOM SEG object (DICOM series input only)")
    p.add_argument("--rtstruct", metavar="OUT.dcm", help="also write an RTSTRUCT for planning systems (DICOM series input only)")
    p.add_argument("--names", default="sat", choices=["sat", "tg263"],
                   help="structure names in every output: SAT's terms (default) or AAPM TG-263 names where TG-263 has one")
    p.add_argument("--modality", default="auto", choices=["auto", "ct", "mri", "pet"],
                   help="image modality; 'auto' reads the DICOM Modality tag and refuses other inputs (default auto)")
    p.add_argument("--model", default="nano", metavar="nano|pro|DIR",
                   help="installed official model (nano, pro) or a model folder (default nano)")
    p.add_argument("--checkpoint", metavar="SAT.pth", help="official SAT segmentation checkpoint downloaded by hand")
    p.add_argument("--text-encoder-checkpoint", metavar="TE.pth", help="its paired official text-encoder checkpoint")
    p.add_argument("--variant", choices=["nano", "pro"], help="architecture of --checkpoint")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="compute device (default auto: CUDA if available and the run fits in its memory, else CPU)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="auto (default): fp16 autocast on CUDA, as the official model runs; fp32 on CPU. "
                        "fp32, fp16 (CUDA only) or bf16 force one")
    p.add_argument("--max-memory", metavar="SIZE", help=MAX_MEMORY_HELP)
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID to use when the DICOM folder holds several series")
    p.add_argument("--orientation", default="RAS", choices=["RAS", "ASR"],
                   help="orientation SAT sees the volume in (default RAS, as the official inference)")
    p.add_argument("--roi", nargs=6, type=float, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                   help="box in RAS mm: only windows covering it run; the result is pasted into the full grid")
    p.add_argument("--split-dir", metavar="DIR", help="also write one NIfTI mask per prompt (<term>.nii.gz) into DIR")
    p.add_argument("--progress", default="text", choices=["text", "json", "none"],
                   help="progress on stderr as text (default), as JSON-lines events on stdout, or none")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--allow-free-text", action="store_true",
                   help="run prompts that are not in SAT's vocabulary (after a warning) instead of refusing")
    p.add_argument("--download", action="store_true",
                   help="download the official model from huggingface.co/zzh99/SAT if it is not installed")


def _add_terms(commands) -> None:
    p = commands.add_parser("terms", help="list SAT's terms, or complete a query",
                            description="Ranked SAT terms matching QUERY (synonyms and abbreviations understood), or all terms.",
                            epilog=EPILOG)
    p.add_argument("query", nargs="?", default="", metavar="QUERY", help="text to complete, e.g. 'kidn' or 'L3'")
    p.add_argument("--modality", choices=["ct", "mri", "pet"], help="only terms SAT knows for this modality")
    p.add_argument("--limit", type=int, default=20, help="maximum number of completions (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_models(commands) -> None:
    p = commands.add_parser("models", help="list, download, verify, import or remove official SAT models",
                            description="Manage the per-user model cache (SATSEGMENT_HOME overrides its location). "
                                        "Downloads happen only through `models download` or `segment --download`.",
                            epilog=EPILOG)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="official models, whether installed, size and GPU memory need", epilog=EPILOG)
    for action, text in (("download", "download and verify a model (resumes an interrupted download)"),
                         ("verify", "re-check the SHA-256 of an installed model's files"),
                         ("remove", "delete an installed model and partial downloads")):
        actions.add_parser(action, help=text, description=text, epilog=EPILOG).add_argument("name", choices=["nano", "pro"], metavar="NAME", help="nano or pro")
    imp = actions.add_parser("import", help="install from local files (offline sites)",
                             description="Install a model from a folder or .zip holding the two official .pth files "
                                         "(e.g. nano.pth + nano_text_encoder.pth) or a SATSegment model folder.", epilog=EPILOG)
    imp.add_argument("name", choices=["nano", "pro"], metavar="NAME", help="nano or pro")
    imp.add_argument("path", metavar="PATH", help="folder or .zip file")
    path = actions.add_parser("path", help="print the model cache folder, or an installed model's folder", epilog=EPILOG)
    path.add_argument("name", nargs="?", choices=["nano", "pro"], metavar="NAME", help="nano or pro")


def megabytes(text: str) -> float:
    """argparse type of a memory size in MB: a finite number, 0 or more (`nan`, `inf`, `-5` are refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, 0 or more, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `satsegment` and `python -m SATSegmentLib`; returns the exit status."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        # What the console cannot encode (a Japanese prompt on a cp1252 console) is printed as \x escapes,
        # as Python does on stderr, instead of failing once the work is done.
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a reader that went away shows here, not in Python's flush at exit
    except BrokenPipeError:
        return _stdout_closed()


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    json_errors = getattr(args, "progress", None) == "json"
    try:
        with _sigterm_as_interrupt(args.command != "serve"):
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return _report(CancelledError("Interrupted; nothing was written.", "Run the command again to restart (downloads resume)."), json_errors)
    except SATSegmentError as exc:
        return _report(exc, json_errors)
    except BrokenPipeError:
        raise  # not a bug: `main` ends quietly
    except Exception as exc:  # noqa: BLE001 - last resort: a readable message and exit 1, plus the traceback
        from .errors import as_user_error

        traceback.print_exc()
        return _report(as_user_error(exc), json_errors)


@contextlib.contextmanager
def _sigterm_as_interrupt(enabled: bool) -> Iterator[None]:
    """While a command runs, SIGTERM (`kill`, a batch scheduler, a closing terminal session) raises
    KeyboardInterrupt like Ctrl+C, so temporary files are removed and the exit status is 130; by
    default Python would die at once and leave them. Not for `serve`, whose jobs catch every exception."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def _stdout_closed() -> int:
    """End quietly when the reader of stdout went away (`satsegment terms | head -1`), as Unix tools do:
    no traceback, exit 141. stdout now points at os.devnull, so that Python's flush at exit does not
    fail again (the Python documentation's recipe, signal module, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _report(exc: SATSegmentError, json_errors: bool) -> int:
    if json_errors:
        _print_json({"event": "error", "id": None, **exc.to_dict()}, sys.stdout)
    else:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        for suggestion in getattr(exc, "suggestions", [])[:8]:
            print(f"  did you mean: {suggestion}", file=sys.stderr)
    return exc.exit_code


def _print_json(event: dict, stream: TextIO) -> None:
    stream.write(json.dumps(event, ensure_ascii=True, default=str) + "\n")
    stream.flush()


# ---- segment -----------------------------------------------------------------------------------

def _segment(args) -> int:
    from .job import SegmentRequest, Worker

    request = SegmentRequest(
        input=args.input, prompts=list(args.prompt) + _read_prompts_file(args.prompts_file), output=args.output,
        modality=args.modality, model=args.model, checkpoint=args.checkpoint,
        text_encoder_checkpoint=args.text_encoder_checkpoint, variant=args.variant, device=args.device, precision=args.precision,
        max_memory=args.max_memory, series=args.series,
        orientation=args.orientation, roi=args.roi, split_dir=args.split_dir, overwrite=args.overwrite,
        allow_free_text=args.allow_free_text, allow_download=args.download, dicom_seg=args.dicom_seg,
        rtstruct=args.rtstruct, names=args.names)
    if args.progress != "json":
        result = Worker(feature_cache_mb=0).run(request, TextProgress() if args.progress == "text" else _print_warnings_only)
        _print_summary(result)
        return 0
    events, sys.stdout = sys.stdout, sys.stderr  # stdout carries only the JSON events
    try:
        result = Worker(feature_cache_mb=0).run(request, lambda event: _print_json(event, events))
    finally:
        sys.stdout = events
    _print_json({"event": "result", "id": None, **result}, sys.stdout)
    return 0


def _read_prompts_file(path: str | None) -> list[str]:
    """Structure names of --prompts-file: one per line, comma/semicolon separated, or a planning-system CSV export."""
    from .prompts import read_structure_list

    return read_structure_list(Path(path)) if path else []


class TextProgress:
    """`--progress text`: one line per progress event on stderr, and the warnings. A stage repeating
    its message (the vocabulary embedding reports every batch) is printed once."""

    def __init__(self) -> None:
        self._last: tuple[str, str] | None = None

    def __call__(self, event: dict) -> None:
        if event["event"] != "progress":
            _print_warnings_only(event)
            return
        line = (event["stage"], event.get("message", ""))
        if line == self._last:
            return
        self._last = line
        eta = f", about {event['eta']:.0f} s left" if event.get("eta") is not None else ""
        print(f"[{event['fraction']:4.0%}] {line[0]}: {line[1]} ({event['elapsed']:.0f} s{eta})", file=sys.stderr)


def _print_warnings_only(event: dict) -> None:
    if event["event"] == "warning":
        print(f"warning: {event['message']}", file=sys.stderr)
        if event.get("suggestions"):
            print(f"  suggestions: {', '.join(event['suggestions'][:8])}", file=sys.stderr)


def _print_summary(result: dict) -> None:
    outputs = result["outputs"]
    files = [outputs[key] for key in ("segmentation", "dicom_seg", "rtstruct") if outputs.get(key)]
    print(f"wrote {', '.join(files)} ({result['model']}, {result['modality'].upper()}, "
          f"{result['timings'].get('total', 0):.1f} s)")
    for segment in result["segments"]:
        state = "EMPTY" if segment["empty"] else f"{segment['volume_ml']:.1f} ml, {segment['voxels']} voxels"
        print(f"  {segment['name']:<40} {state}   (prompt: {segment['prompt']})")
    for prompt, path in result["outputs"].get("split", {}).items():
        print(f"  {prompt}: {path}")


# ---- terms -------------------------------------------------------------------------------------

def _terms(args) -> int:
    from . import vocabulary

    if args.limit < 1:
        raise InputError("--limit must be at least 1.")
    if args.query.strip():
        rows = [{"term": s.term, "display": s.display, "modality": ",".join(s.modality), "reason": s.reason}
                for s in vocabulary.complete(args.query, modality=args.modality, limit=args.limit)]
    else:
        rows = [{"term": t.term, "modality": ",".join(t.modalities)} for t in vocabulary.terms(args.modality)]
    if args.json:
        _print_json({"terms": rows}, sys.stdout)
    elif not rows:
        print(_no_match_message(args.query, args.modality), file=sys.stderr)
        return InputError.exit_code
    else:
        for row in rows:
            extra = f"  ({row['reason']})" if row.get("reason") else ""
            print(f"{row.get('display') or row['term']}\t{row.get('modality') or ''}{extra}")
    return 0


def _no_match_message(query: str, modality: str | None) -> str:
    """Why `terms QUERY --modality M` found nothing: when SAT knows the text for other modalities,
    vocabulary.resolve's reason ("SAT knows 'pancreas' for CT and MRI but not for PET")."""
    from . import vocabulary
    from .errors import UnknownPromptError

    if modality and vocabulary.complete(query, limit=1):
        try:
            vocabulary.resolve(query, modality)
        except UnknownPromptError as exc:
            return exc.message
    return f"No SAT term matches '{query}'."


# ---- models ------------------------------------------------------------------------------------

def _models(args) -> int:
    from . import modelstore

    if args.action == "list":
        from .model import SATConfig
        from .model.memory import window_needs

        for row in modelstore.list_models():
            state = "installed" if row.installed else "not installed"
            needs = window_needs(SATConfig.for_variant(modelstore.entry(row.name)["variant"]))
            print(f"{row.name:<6} {row.display_name:<9} {state:<14} {row.size_bytes / 1e9:5.1f} GB  "
                  f"needs {needs['gpu_gb']:.1f} GB GPU (fp16) or {needs['cpu_gb']:.1f} GB RAM "
                  f"(official code: ~{row.gpu_memory_gb:g} GB GPU)  {row.path}")
        print(f"\n{modelstore.licence_note()}")
    elif args.action == "download":
        print(modelstore.licence_note(), file=sys.stderr)
        folder = modelstore.download(args.name, progress=_download_progress())
        print(folder)
    elif args.action == "verify":
        for filename, digest in modelstore.verify(args.name).items():
            print(f"ok  {filename}  sha256 {digest}")
    elif args.action == "import":
        print(modelstore.import_model(args.name, args.path))
    elif args.action == "remove":
        removed = modelstore.remove(args.name)
        print(f"removed {args.name}" if removed else f"{args.name} was not installed")
    elif args.action == "path":
        print(modelstore.path_for(args.name) if args.name else modelstore.model_home())
    return 0


def _download_progress():
    """Progress printer for downloads: one line per 5 % on stderr."""
    last = {"step": -1}

    def progress(stage: str, current: int, total: int, message: str) -> None:
        step = int(current * 20 / total) if total else -1
        if step != last["step"]:
            last["step"] = step
            print(f"  {message}", file=sys.stderr)
    return progress


def _serve(args) -> int:
    from .server import serve

    return serve(feature_cache_mb=args.feature_cache_mb, max_memory=args.max_memory)


def _server(args) -> int:
    from .labelserver.command import run

    return run(args)


_COMMANDS = {"segment": _segment, "terms": _terms, "models": _models, "serve": _serve, "server": _server}
