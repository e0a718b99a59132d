"""Drive a `satsegment serve` worker process (docs/worker-protocol.md) without blocking the caller.

Two reader threads turn the worker's stdout (JSON replies) and stderr (log lines) into a queue; the
owner calls `poll()` from its own loop (a QTimer in Slicer, a plain loop in tests and scripts), and
events are delivered there, on the owner's thread, through callbacks. No Qt and no Slicer here.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
import traceback
from typing import Callable

FINAL_EVENTS = frozenset({"result", "error", "cancelled"})

EventCallback = Callable[[dict], None]
LogCallback = Callable[[str], None]


class WorkerClient:
    """One worker process, restarted on demand; requests out, events back through `poll()`.

    `onEvent(message)` receives every reply (`message["event"]` is its kind); `onLog(line)` receives
    the worker's stderr; `onExit(returnCode)` runs once the process has ended and all its output was
    delivered. A job that is cancelled but not acknowledged within `cancelTimeout` seconds
    gets its process tree killed and a `cancelled` event synthesised, so Cancel always ends a run.
    """

    def __init__(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        onEvent: EventCallback | None = None,
        onLog: LogCallback | None = None,
        cancelTimeout: float = 5.0,
        onExit: Callable[[int], None] | None = None,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.onEvent = onEvent or (lambda message: None)
        self.onLog = onLog or (lambda line: None)
        self.onExit = onExit or (lambda returnCode: None)
        self.cancelTimeout = cancelTimeout
        self._process: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self._pending: list[str] = []  # job ids sent and not finished, in queue order
        self._killDeadline: float | None = None
        self._expectExit = False  # set when we stop the worker ourselves: pending jobs end as cancelled
        self._ids = itertools.count(1)

    # -- process -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pendingJobs(self) -> list[str]:
        return list(self._pending)

    def start(self) -> None:
        """Start the worker if it is not running (its model stays loaded between jobs)."""
        if self.running:
            return
        self._queue = queue.Queue()  # events of a previous process must not leak into this one
        self._expectExit = False
        options: dict = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True  # own process group: the whole tree can be killed
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            **options,
        )
        events = self._queue
        threading.Thread(target=self._readStdout, args=(self._process, events), daemon=True).start()
        threading.Thread(target=self._readStderr, args=(self._process, events), daemon=True).start()
        self.onLog(f"started worker (pid {self._process.pid}): {' '.join(self.command)}")

    @staticmethod
    def _readStdout(process: subprocess.Popen, events: queue.Queue) -> None:
        """JSON replies, one per line. Lines are split on b"\\n" only and decoded as UTF-8 here (the worker
        writes ASCII JSON), so neither the platform's code page nor Unicode line separators can cut a reply."""
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                events.put(("log", f"[worker stdout, not JSON] {line}"))
                continue
            events.put(("event", message) if isinstance(message, dict) else ("log", line))
        events.put(("exit", process))

    @staticmethod
    def _readStderr(process: subprocess.Popen, events: queue.Queue) -> None:
        for raw in process.stderr:
            events.put(("log", raw.decode("utf-8", errors="replace").rstrip("\r\n")))

    def _send(self, request: dict) -> None:
        try:
            self._process.stdin.write((json.dumps(request, ensure_ascii=True) + "\n").encode("ascii"))
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            self.onLog(f"could not send {request.get('type')} to the worker: {exc}")

    def _newId(self, prefix: str) -> str:
        return f"{prefix}-{os.getpid()}-{next(self._ids)}"

    # -- requests ----------------------------------------------------------------------------------

    def submitSegment(
        self, input: str, prompts: list[str], output: str, modality: str = "auto", options: dict | None = None
    ) -> str:
        """Queue a `segment` job and return its id; starts the worker when needed."""
        self.start()
        jobId = self._newId("segment")
        request = {"type": "segment", "id": jobId, "input": str(input), "prompts": list(prompts),
                   "output": str(output), "modality": modality, "options": dict(options or {})}
        self._pending.append(jobId)
        self._send(request)
        return jobId

    def cancel(self, jobId: str | None = None) -> None:
        """Ask the worker to cancel a job (default: all pending); kill it if it does not answer in time."""
        targets = [jobId] if jobId else list(self._pending)
        if not targets or not self.running:
            return
        for target in targets:
            self._send({"type": "cancel", "id": self._newId("cancel"), "target": target})
        self._killDeadline = time.monotonic() + self.cancelTimeout

    def ping(self) -> str:
        self.start()
        pingId = self._newId("ping")
        self._send({"type": "ping", "id": pingId})
        return pingId

    # -- events ------------------------------------------------------------------------------------

    def poll(self) -> list[dict]:
        """Deliver everything the worker said since the last call; enforce the cancel deadline."""
        delivered = []
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "log":
                self.onLog(payload)
            elif kind == "event":
                delivered.append(self._deliver(payload))
            elif kind == "exit" and payload is self._process:
                delivered.extend(self._processEnded())
        if self._killDeadline is not None and time.monotonic() > self._killDeadline:
            self.onLog("the worker did not answer the cancel request in time: stopping it")
            self._expectExit = True
            self.kill()
            delivered.extend(self._finishPending({"event": "cancelled"}))
        return delivered

    def _deliver(self, message: dict) -> dict:
        if message.get("event") in FINAL_EVENTS and message.get("id") in self._pending:
            self._pending.remove(message["id"])
            if not self._pending:
                self._killDeadline = None
        try:
            self.onEvent(message)
        except Exception:  # a failing callback must not stop the delivery of the events after it
            self.onLog("an event callback failed:\n" + traceback.format_exc())
        return message

    def _finishPending(self, template: dict) -> list[dict]:
        delivered = [self._deliver({**template, "id": jobId}) for jobId in list(self._pending)]
        self._killDeadline = None
        return delivered

    def _processEnded(self) -> list[dict]:
        returnCode = self._process.wait()
        self.onLog(f"worker exited with code {returnCode}")
        self.onExit(returnCode)
        if self._expectExit or self._killDeadline is not None:
            return self._finishPending({"event": "cancelled"})
        killedBySystem = os.name != "nt" and returnCode == -signal.SIGKILL
        return self._finishPending({
            "event": "error",
            "code": "out_of_memory" if killedBySystem else "internal_error",
            "exit_code": 5 if killedBySystem else 1,
            "message": f"The SATSegment worker stopped unexpectedly (exit code {returnCode}).",
            "hint": ("The system stopped it, usually for lack of memory: draw an ROI, use SAT-Nano, or close other programs."
                     if killedBySystem else "See the log panel for the worker's last messages."),
        })

    def waitFor(self, jobId: str, timeout: float, interval: float = 0.05) -> dict:
        """Poll until the job's final event arrives (for scripts and tests) and return that event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.poll():
                if message.get("id") == jobId and message.get("event") in FINAL_EVENTS:
                    return message
            time.sleep(interval)
        raise TimeoutError(f"job {jobId} did not finish within {timeout} s")

    # -- shutdown ----------------------------------------------------------------------------------

    def kill(self) -> None:
        """Stop the worker and every process it started, now."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit (it cancels its job), kill it if it does not within `timeout`."""
        process = self._process
        if process is None:
            return
        self._expectExit = True
        if process.poll() is None:
            self._send({"type": "shutdown", "id": self._newId("shutdown")})
            try:
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.poll()  # deliver the last replies
        self._finishPending({"event": "cancelled"})
        self._process = None
