"""Measuring a stage: wall and CPU seconds, peak RSS, DuckDB spill, each stage in its own process.

The parent starts one child process per stage and reads the child's own rusage when it exits
(`os.wait4`): its `ru_maxrss` is the exact high-water mark of that process, so stages never inherit
each other's memory. Inside the child a sampler thread reads the resident set every few
milliseconds and attributes it to the phase being run (ingest and validate share a process), and
also tracks the size of DuckDB's spill folder.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

SAMPLE_SECONDS = 0.02
SPILL_SAMPLE_EVERY = 10  # spill folder size every 10th RSS sample: a directory walk costs more
MB = 1024 * 1024

CHILD_FAILED = "stage {stage!r} exited with code {code}; its stderr ends with:\n{tail}"


@dataclass
class Phase:
    """One timed part of a stage, with the peak resident set seen while it ran.

    Phases nest (validate runs inside ingest): `peak_rss_mb` covers the whole phase, nested ones
    included; `own_peak_rss_mb` only the samples taken while no nested phase was running.
    """

    name: str
    started: float
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    own_peak_rss_mb: float = 0.0
    peak_spill_mb: float = 0.0


@dataclass
class Sampler:
    """Samples this process's RSS (and a DuckDB spill folder) in a daemon thread, per phase."""

    spill_dir: Path | None = None
    phases: list[Phase] = field(default_factory=list)
    _active: list[Phase] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Time the block and attribute the RSS samples taken meanwhile to phase `name`."""
        phase = Phase(name=name, started=time.monotonic())
        cpu = _cpu_seconds()
        with self._lock:
            self._active.append(phase)
        self._sample(spill=True)
        try:
            yield phase
        finally:
            self._sample(spill=True)
            with self._lock:
                self._active.remove(phase)
            phase.wall_s = time.monotonic() - phase.started
            phase.cpu_s = _cpu_seconds() - cpu
            self.phases.append(phase)

    def _run(self) -> None:
        count = 0
        while not self._stop.wait(SAMPLE_SECONDS):
            count += 1
            self._sample(spill=count % SPILL_SAMPLE_EVERY == 0)

    def _sample(self, *, spill: bool) -> None:
        with self._lock:
            active = list(self._active)
        if not active:
            return
        rss = current_rss_mb()
        spilled = folder_mb(self.spill_dir) if spill and self.spill_dir is not None else 0.0
        for phase in active:
            phase.peak_rss_mb = max(phase.peak_rss_mb, rss)
            phase.peak_spill_mb = max(phase.peak_spill_mb, spilled)
        active[-1].own_peak_rss_mb = max(active[-1].own_peak_rss_mb, rss)


def current_rss_mb() -> float:
    """Resident set of this process now, in MiB."""
    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_mb(path: Path) -> float:
    """Total size of the files under `path` (0 when it does not exist), in MiB."""
    total = 0
    try:
        for entry in os.scandir(path):
            try:
                total += entry.stat(follow_symlinks=False).st_size if entry.is_file() else 0
            except FileNotFoundError:
                continue  # DuckDB removed it meanwhile
    except (FileNotFoundError, NotADirectoryError):
        return 0.0
    return total / MB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class ChildRun:
    """What the parent saw of one stage process."""

    stage: str
    status: str  # ok | failed | timeout
    process_wall_s: float
    process_cpu_s: float
    process_peak_rss_mb: float
    result: dict[str, Any] | None
    error: str | None
    load_average: dict[str, Any] | None = None  # the machine's load before and after: shared machines are noisy


def run_child(
    stage: str, argv: Sequence[str], *, result_path: Path, log_path: Path, timeout_s: float,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run one stage process; return its wall time, CPU time and peak RSS from `wait4`, and its JSON."""
    result_path.unlink(missing_ok=True)
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        # its own session, so a timeout can end the stage and anything it started, and nothing else
        child = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        status, usage = _wait(child.pid, timeout_s)
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime if usage else 0.0
    peak = usage.ru_maxrss / 1024 if usage else 0.0
    if status == "timeout":
        return ChildRun(stage, "timeout", wall, cpu, peak, None, f"stopped after {timeout_s:.0f} s")
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not result_path.exists():
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        return ChildRun(stage, "failed", wall, cpu, peak, None, CHILD_FAILED.format(stage=stage, code=code, tail=tail))
    return ChildRun(stage, "ok", wall, cpu, peak, json.loads(result_path.read_text(encoding="utf-8")), None)


def _wait(pid: int, timeout_s: float) -> tuple[int | str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() >= deadline:
            os.killpg(pid, signal.SIGTERM)  # the stage's own process group (start_new_session)
            try:
                _, status, usage = _wait_blocking(pid, grace_s=10)
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
            return "timeout", usage
        time.sleep(0.05)


def _wait_blocking(pid: int, *, grace_s: float) -> tuple[int, int, Any]:
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return done, status, usage
        time.sleep(0.05)
    raise TimeoutError
