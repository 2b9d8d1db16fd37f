"""Measuring: per-token timestamps inside generate() (CUDA events, one synchronize), the allocator's memory
per round, NVML memory, and NVML energy split at the first token. A reading that cannot be taken is None
("unavailable"), never 0."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor


class StepClock(LogitsProcessor):
    """A logits processor that timestamps every generation step without synchronizing: CUDA events on a
    GPU (read after one synchronize at the end), perf_counter on a CPU. It changes no score.

    Given an ``nvml`` with an energy counter it also reads the counter at the start, at the first token
    (after one synchronize, so the prefill's work is done) and at ``finish()``: the prefill's and the
    decode's energy come from separate windows. The synchronize follows the first token's timestamp, so it
    touches no interval but the first decode step's host side. A call of one token (``new_tokens=1``, a
    prefill point) has no decode window and no read at its first token: that read sat inside the whole call
    (on the H200 the suite's prefill call timed 3-7 ms over plain ``generate()`` at every context, 13.7 % of
    phi-2's at 512 tokens), and finish's read ends the prefill's window instead."""

    def __init__(self, device: torch.device, nvml: Nvml | None = None, new_tokens: int | None = None,
                 energy: bool | str = True):
        self.cuda = device.type == "cuda"
        # energy: True, read at the start, the first token and the end (the prefill's and the decode's windows);
        # "call" (throughput points), at the start and the end only: none inside the call's end-to-end time, one
        # window for the whole call; False, no reading at all.
        if energy not in (True, False, "call"):
            raise ValueError(f"energy={energy!r}: valid values are True, False and 'call'")
        self.nvml = nvml if energy and nvml is not None and nvml.handle is not None else None
        self.split = energy is True and new_tokens != 1  # a read at the first token (a one-token call has none)
        self.marks: list[Any] = []
        self.end: Any = None
        self.energy: list[tuple[float, int | None]] = []

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _read_energy(self) -> None:
        if self.nvml is not None:
            if self.cuda:
                torch.cuda.synchronize()
            self.energy.append((time.perf_counter(), self.nvml.energy_mj()))

    def start(self) -> None:
        self.energy = []
        self._read_energy()
        self.marks = [self._mark()]

    def __call__(self, input_ids, scores):
        self.marks.append(self._mark())
        if len(self.marks) == 2 and self.split:
            self._read_energy()
        return scores

    def finish(self) -> None:
        """After the call's last synchronize: marks the call's end and closes the decode's energy window."""
        self.end = self._mark()
        self._read_energy()

    def call_s(self) -> float:
        """From ``start`` to ``finish``: the whole call, generate()'s work after the last token included (what
        a wall clock around the call gives; a GPU idle at both ends, the events time the host)."""
        if self.cuda:
            torch.cuda.synchronize()
            return self.marks[0].elapsed_time(self.end) / 1e3
        return self.end - self.marks[0]

    def intervals_s(self) -> list[float]:
        """[time to first token, then one interval per further token], in seconds."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(self.marks)]
        return [b - a for a, b in itertools.pairwise(self.marks)]

    def energy_windows(self) -> EnergyWindows | None:
        """The prefill's and the decode's joules and seconds, or None without a full set of readings (read at
        the ends only -- a one-token call, or ``energy="call"`` -- the prefill's window runs to the end of the call
        and the decode's is empty)."""
        if any(mj is None for _, mj in self.energy):
            return None
        if not self.split and len(self.energy) == 2:
            (t0, e0), (t1, e1) = self.energy
            return EnergyWindows((e1 - e0) / 1e3, t1 - t0, 0.0, 0.0)
        if len(self.energy) != 3:
            return None
        (t0, e0), (t1, e1), (t2, e2) = self.energy
        return EnergyWindows((e1 - e0) / 1e3, t1 - t0, (e2 - e1) / 1e3, t2 - t1)


@dataclass
class EnergyWindows:
    """One generate() call's energy, split at the first token."""

    prefill_j: float
    prefill_s: float
    decode_j: float
    decode_s: float

    @property
    def call_j(self) -> float:
        return self.prefill_j + self.decode_j

    @property
    def call_s(self) -> float:
        return self.prefill_s + self.decode_s


# NVML's total-energy counter updates about every 100 ms (measured on the H200: 96.9-103.1 ms), so each window
# is off by up to an update's energy at either end: every window must span several updates, and the windows
# together a few seconds, to keep that to a few per cent.
MIN_ENERGY_WINDOW_S = 3.0
MIN_EACH_WINDOW_S = 1.0


def energy_per_unit(windows: list[tuple[float, float]], units: int, min_window_s: float = MIN_ENERGY_WINDOW_S,
                    min_each_s: float = MIN_EACH_WINDOW_S) -> tuple[float | None, float, str]:
    """Joules per unit (token) over several (joules, seconds) windows summed: (figure or None, seconds, why
    unavailable). Windows too short, each or together, give no figure, and say so."""
    total_s = sum(s for _, s in windows)
    if not windows:
        return None, 0.0, "energy counter unavailable"
    if min(s for _, s in windows) < min_each_s:
        return None, total_s, (f"shortest window {min(s for _, s in windows):.2f} s < {min_each_s:g} s: NVML's "
                               "energy counter (~100 ms updates) cannot resolve it")
    if total_s < min_window_s:
        return None, total_s, (f"window {total_s:.2f} s < {min_window_s:.0f} s: too short for NVML's energy "
                               "counter (~100 ms updates)")
    if units <= 0:
        return None, total_s, "no tokens in the window"
    return sum(j for j, _ in windows) / units, total_s, ""


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
            visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
            entry = visible[index] if index < len(visible) else str(index)
            if entry.isdigit():
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(int(entry))
            else:  # GPU-/MIG- UUID: the GPU this process sees, not physical GPU 0
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(entry)
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_bytes(device: torch.device) -> tuple[int | None, int | None]:
    """(allocated, reserved) by the caching allocator now: what a point starts on top of."""
    if device.type != "cuda":
        return None, None
    synchronize(device)
    return torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)


def round_start(device: torch.device) -> int | None:
    """Before each round: reset the allocator's peak; returns what is allocated now."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def round_peak(device: torch.device) -> int | None:
    """After a round: the allocator's high-water mark since ``round_start``."""
    if device.type != "cuda":
        return None
    synchronize(device)
    return torch.cuda.max_memory_allocated(device)
