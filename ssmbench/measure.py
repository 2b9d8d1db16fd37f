"""Measuring: per-token timestamps inside generate() (CUDA events, one synchronize), allocator and NVML
memory, and NVML energy. A reading that cannot be taken is None ("unavailable"), never 0."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor


class StepClock(LogitsProcessor):
    """A logits processor that timestamps every generation step without synchronizing: CUDA events on a
    GPU (read after one synchronize at the end), perf_counter on a CPU. It changes no score."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        self.marks = [self._mark()]

    def __call__(self, input_ids, scores):
        self.marks.append(self._mark())
        return scores

    def intervals_s(self) -> list[float]:
        """[time to first token, then one interval per further token], in seconds."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(self.marks)]
        return [b - a for a, b in itertools.pairwise(self.marks)]


@dataclass
class MemoryReading:
    peak_allocated: int | None = None  # allocator high-water mark during the region
    extra_peak: int | None = None  # that peak minus what was allocated before (activations + cache)
    nvml_process: int | None = None  # NVML's figure for this process after the region
    host_available: int | None = None  # /proc/meminfo MemAvailable (unified-memory devices)


def host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Nvml:
    """Lazy NVML access; every query returns None when NVML or the query is unsupported."""

    def __init__(self, index: int = 0):
        self.handle = None
        self.reason = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv = pynvml
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            physical = visible.split(",")[index] if visible and visible.split(",")[index].isdigit() else index
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(int(physical))
        except Exception as exc:  # no driver, no library, a uuid-style mask we do not map
            self.reason = f"{type(exc).__name__}: {exc}"

    def _try(self, fn):
        if self.handle is None:
            return None
        try:
            return fn()
        except Exception:
            return None

    def process_memory(self, pid: int | None = None) -> int | None:
        pid = os.getpid() if pid is None else pid

        def query():
            for proc in self._nv.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
            return None

        return self._try(query)

    def energy_mj(self) -> int | None:
        return self._try(lambda: int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self.handle)))

    def driver(self) -> str | None:
        return self._try(lambda: str(self._nv.nvmlSystemGetDriverVersion()))


@dataclass
class EnergyMeter:
    """Joules over a window from NVML's total-energy counter (mJ since driver load, ~100 ms updates): only
    windows of at least ``min_window_s`` give a figure."""

    nvml: Nvml
    min_window_s: float = 3.0
    _start: tuple[float, int | None] | None = field(default=None, init=False)

    def start(self) -> None:
        self._start = (time.perf_counter(), self.nvml.energy_mj())

    def stop(self) -> tuple[float | None, float, str]:
        """(joules or None, window seconds, why unavailable)."""
        assert self._start is not None, "EnergyMeter.stop() before start()"
        t0, e0 = self._start
        window, e1 = time.perf_counter() - t0, self.nvml.energy_mj()
        if e0 is None or e1 is None:
            return None, window, "energy counter unavailable"
        if window < self.min_window_s:
            return None, window, f"window {window:.1f} s < {self.min_window_s:.0f} s"
        return (e1 - e0) / 1e3, window, ""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_region_start(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def memory_region_end(device: torch.device, before: int | None, nvml: Nvml | None) -> MemoryReading:
    reading = MemoryReading(host_available=host_available_bytes())
    if device.type == "cuda" and before is not None:
        synchronize(device)
        reading.peak_allocated = torch.cuda.max_memory_allocated(device)
        reading.extra_peak = reading.peak_allocated - before
        reading.nvml_process = nvml.process_memory() if nvml else None
    return reading
