"""A running torchrun process: its output, a progress bar, and a clean stop.

>>> Job.__name__
'Job'
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from gpuviz.run.watchdog import DUMP_REQUEST

_RANK_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]:(.*)$")


class Job:
    """A running torchrun process: output, progress, and a clean stop."""

    def __init__(self, cmd: list[str], run_dir: Path, stream: bool, progress: bool, env: dict,
                 suffix: str = ""):
        self.run_dir = run_dir
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.known_pids: set[int] = set()
        self._log = open(run_dir / f"launcher{suffix}.log", "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                     text=True, bufsize=1)
        self._stream = stream
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        self._progress = threading.Thread(target=self._watch, args=(progress,), daemon=True)
        self._done = threading.Event()
        self._progress.start()

    def _read_output(self) -> None:
        for line in self.proc.stdout:
            self._log.write(line)
            self.tail.append(line.rstrip("\n"))
            m = _RANK_PREFIX.match(line)
            if self._stream and m:
                sys.stdout.write(m.group(2).lstrip(" ") + ("" if m.group(2).endswith("\n") else "\n"))
                sys.stdout.flush()
        self._log.flush()

    def _watch(self, progress: bool) -> None:
        """Track the worker processes and draw a bar of rank 0's finished steps."""
        bar, seen, offset, total = None, 0, 0, None
        try:
            while not self._done.is_set():
                self._track_pids()
                files = sorted(self.run_dir.glob("rank*.jsonl"),
                               key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
                if progress and files:
                    with open(files[0], encoding="utf-8") as f:
                        f.seek(offset)
                        chunk = f.read()
                    complete = chunk[: chunk.rfind("\n") + 1]
                    offset += len(complete.encode("utf-8"))
                    for line in complete.splitlines():
                        if '"total_steps"' in line:
                            m = re.search(r'"total_steps":(\d+)', line)
                            total = int(m.group(1)) if m else total
                        if '"step_end"' in line:
                            seen += 1
                    if bar is None and (seen or total):
                        from tqdm.auto import tqdm

                        bar = tqdm(total=total, unit="step", desc=f"rank 0 of {self.run_dir.name}")
                    if bar is not None:
                        if total and bar.total != total:
                            bar.total = total
                            bar.refresh()
                        bar.update(seen - bar.n)
                self._done.wait(0.1)
        finally:
            if bar is not None:
                bar.close()

    def _track_pids(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.known_pids.add(child.pid)
        except psutil.Error:
            pass

    def wait(self, timeout: float | None) -> int | None:
        """Wait for torchrun to exit; None if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() > deadline:
                    return None

    def request_where(self, wait: float = 3.0, nranks: int = 1) -> None:
        """Ask every rank to write where it is, and give them ``wait`` seconds to answer."""
        (self.run_dir / DUMP_REQUEST).touch()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            answered = sum('"name":"where"' in p.read_text(encoding="utf-8", errors="replace")
                           for p in self.run_dir.glob("rank*.jsonl"))
            if answered >= nranks:
                break
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """Stop torchrun (which stops its workers), then kill anything left."""
        self._track_pids()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._track_pids()
        survivors = []
        for pid in self.known_pids | {self.proc.pid}:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    survivors.append(p)
            except psutil.Error:
                continue
        for p in survivors:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(survivors, timeout=3)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def finish(self) -> None:
        self._done.set()
        self._progress.join(timeout=5)
        self._reader.join(timeout=5)
        self._log.close()
        (self.run_dir / DUMP_REQUEST).unlink(missing_ok=True)

