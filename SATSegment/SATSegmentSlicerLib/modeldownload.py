"""Download one SAT model in a child process, reporting progress as JSON lines on stdout.

Run as `python -m SATSegmentSlicerLib.modeldownload NAME` by the module so that Slicer never waits
on the network. Events: `progress` (`stage`, `current`, `total`, `message`: the file and megabytes), then `result` (`path`)
or `error` (the fields of `SATSegmentLib.errors`). Cancel by ending the process: downloads resume.
"""

from __future__ import annotations

import json
import sys


def _emit(event: dict) -> None:
    print(json.dumps(event, ensure_ascii=True), flush=True)


def main(argv: list[str]) -> int:
    from SATSegmentLib import errors, modelstore

    if len(argv) != 1:
        _emit({"event": "error", "code": "bad_input", "exit_code": 2, "message": "usage: modeldownload NAME", "hint": ""})
        return 2

    def progress(stage: str, current: int, total: int, message: str) -> None:
        _emit({"event": "progress", "stage": stage, "current": current, "total": total, "message": message})

    try:
        path = modelstore.download(argv[0], progress=progress)
    except errors.SATSegmentError as exc:
        _emit({"event": "error", **exc.to_dict()})
        return exc.exit_code
    _emit({"event": "result", "path": str(path)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
