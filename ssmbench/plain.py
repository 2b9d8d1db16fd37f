"""The plain measurements calibration holds the suite's figures against -- a user's own way: the backend's plain
call (``generate()``, or the suite's graph / mamba-ssm's own generate) with a synchronize and a wall clock around
it, a streamer's clock for the time between tokens, and the allocator's peak over a call."""

from __future__ import annotations

import gc
import statistics
import time
from itertools import pairwise

import torch
from transformers.generation.streamers import BaseStreamer

from . import backends
from .loading import LoadedModel
from .measure import synchronize

CALLS_MEMORY = 3  # plain calls for the extra peak (the median), fewer where they take over MEMORY_SECONDS
MEMORY_SECONDS = 2.0


def call(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> float:
    """One plain greedy call of exactly ``new_tokens`` tokens: wall seconds, synchronized both ends."""
    synchronize(lm.device)
    start = time.perf_counter()
    with torch.no_grad():
        backends.get(backend).plain_call(lm, ids, new_tokens)
    synchronize(lm.device)
    return time.perf_counter() - start


class TokenClock(BaseStreamer):
    """A streamer that notes the host's clock each time ``generate()`` hands it tokens: first the prompt (before
    the prefill), then each new token once its copy to the host (``.cpu()``, a synchronize) is done."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass

    def steps_s(self) -> list[float]:
        """The time between consecutive new tokens (the first decode step first): one fewer than the tokens."""
        return [b - a for a, b in pairwise(self.times[1:])]


def streamed(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> tuple[float, float, TokenClock]:
    """One plain greedy ``generate()`` of exactly ``new_tokens`` tokens with a ``TokenClock``, synchronized both
    ends: (start, end, the clock). The streamer is a user's way to see each token; it costs a copy of each step's
    tokens to the host, which generate() synchronizes on each step anyway (its stopping check)."""
    clock = TokenClock()
    synchronize(lm.device)
    start = time.perf_counter()
    with torch.no_grad():
        lm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=clock,
                    **backends.get(backend).generate_kwargs)
    synchronize(lm.device)
    end = time.perf_counter()
    if len(clock.times) != new_tokens + 1:
        raise RuntimeError(f"{lm.name}: the streamer saw {len(clock.times)} hand-outs for a prompt and "
                           f"{new_tokens} tokens (expected {new_tokens + 1})")
    return start, end, clock


def steps(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> list[float]:
    """One plain greedy ``generate()`` of exactly ``new_tokens`` tokens with a ``TokenClock``: the
    ``new_tokens - 1`` times between its tokens, in seconds."""
    return streamed(lm, ids, new_tokens, backend)[2].steps_s()


def timed(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> tuple[float, float | None]:
    """One plain greedy call of exactly ``new_tokens`` tokens for the whole batch: its wall seconds, and the
    seconds after its first new token as a ``TokenClock`` sees them (None for the suite's graph and mamba-ssm's
    native generate, which take no streamer)."""
    if not backends.get(backend).streams(lm):
        return call(lm, ids, new_tokens, backend), None
    start, end, clock = streamed(lm, ids, new_tokens, backend)
    return end - start, end - clock.times[1]


def peak(lm: LoadedModel, ids: torch.Tensor, new_tokens: int, backend: str) -> int | None:
    """The allocator's peak over a plain call, minus what was allocated just before it (after a warm-up call
    where the backend compiles or captures, so its state is in place, as in the harness's rounds): the median
    over calls -- ``CALLS_MEMORY`` of them, fewer where they take over ``MEMORY_SECONDS`` -- as the point takes
    the median of its rounds. (On the H200 the compiled decode of phi-2 at 512 tokens peaked 220 MiB over its
    start in most calls once its CUDA graphs had settled, 253 in the first calls after compilation: 33 MiB that
    cuBLAS re-allocates when torch.compile's graph trees have cleared it.)"""
    if lm.device.type != "cuda":
        return None
    if backend != "eager":
        call(lm, ids, new_tokens, backend)
    gc.collect()
    peaks: list[int] = []
    start = time.perf_counter()
    while not peaks or (len(peaks) < CALLS_MEMORY and time.perf_counter() - start < MEMORY_SECONDS):
        synchronize(lm.device)
        torch.cuda.reset_peak_memory_stats(lm.device)
        before = torch.cuda.memory_allocated(lm.device)
        call(lm, ids, new_tokens, backend)
        peaks.append(torch.cuda.max_memory_allocated(lm.device) - before)
    return int(statistics.median(peaks))
