"""The 2026-11-29 sweep's one calibration miss: phi-2's compiled (static cache) decode at 512 tokens, where the
suite's call peaked 33 MiB above plain generate() in every round and timed 4.06 ms/token against plain's
(t(33) - t(1)) / 32 = 4.33. One fresh process, the synthetic phi-2, 512 tokens, 32 new tokens after the first:

  peak:  the allocator's peak over one call minus what was allocated before it, for generate() plain, with
         return_dict_in_generate, with a no-op logits processor, with the suite's StepClock (no NVML), and the
         suite's own call (StepClock with NVML, return_dict_in_generate) -- each after a call of its own.
  steps: the suite's call's per-step intervals (first decode steps apart), and plain t(33), t(1) alternating.

Run from the repository root: python tools/h200/compiled_probe.py [arch]
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout

from transformers import LogitsProcessor  # noqa: E402

from ssmbench import (  # noqa: E402
    backends,  # noqa: E402
    loading,
    registry,
)
from ssmbench.bench import prompt_ids  # noqa: E402
from ssmbench.measure import Nvml, StepClock, synchronize  # noqa: E402
from ssmbench.runs import Runs  # noqa: E402

arch = sys.argv[1] if len(sys.argv) > 1 else "phi"
gpu = torch.cuda.is_available()  # off a GPU (a check of this script): the tiny model on the CPU, no compile
spec = next(s for s in registry.resolve_model_set("synthetic" if gpu else "tiny") if s.arch.key == arch)
lm = loading.load(spec, torch.device("cuda" if gpu else "cpu"), torch.bfloat16 if gpu else torch.float32)
ids = prompt_ids(lm, 512 if gpu else 32)
static = {"cache_implementation": "static"} if gpu else {}
N = 33


class NoOp(LogitsProcessor):
    def __call__(self, input_ids, scores):
        return scores


def gen(n=N, **kw):
    return lm.generate(ids, max_new_tokens=n, min_new_tokens=n, **static, **kw)


runs = Runs()
suite_call = backends.get("compiled" if gpu else "eager").call(lm, ids, N, runs, Nvml())
variants = {
    "plain": lambda: gen(),
    "return_dict": lambda: gen(return_dict_in_generate=True),
    "noop_processor": lambda: gen(logits_processor=[NoOp()]),
    "stepclock": lambda: gen(logits_processor=[StepClock(lm.device)], return_dict_in_generate=True),
    "suite": suite_call,
}


def peak(fn) -> int | None:
    if not gpu:
        return None
    synchronize(lm.device)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = fn()
    synchronize(lm.device)
    result = torch.cuda.max_memory_allocated() - before
    del out
    return result


t0 = time.perf_counter()
gen()  # compiles
print(json.dumps({"first_call_s": time.perf_counter() - t0}), flush=True)
peaks = {}
for name, fn in variants.items():
    fn()
    peaks[name] = [peak(fn) for _ in range(2)]
print(json.dumps({"peak_mib": {k: [None if v is None else round(v / 2**20, 2) for v in vs]
                               for k, vs in peaks.items()}}), flush=True)


def wall(fn) -> float:
    synchronize(lm.device)
    t = time.perf_counter()
    fn()
    synchronize(lm.device)
    return time.perf_counter() - t


runs.intervals.clear()
plain_diffs, walls_suite = [], []
for _ in range(7):
    walls_suite.append(wall(suite_call))
    short = wall(lambda: gen(1))
    plain_diffs.append((wall(gen) - short) / (N - 1))
steps = [i[1:] for i in runs.intervals]
print(json.dumps({
    "suite_median_step_ms": statistics.median(statistics.median(s) for s in steps) * 1e3,
    "suite_mean_step_ms": statistics.median(statistics.mean(s) for s in steps) * 1e3,
    "suite_first_decode_steps_ms": [[round(x * 1e3, 2) for x in s[:4]] for s in steps],
    "suite_ttft_ms": [round(i[0] * 1e3, 2) for i in runs.intervals],
    "suite_wall_ms": [round(w * 1e3, 2) for w in walls_suite],
    "plain_per_token_ms": [round(d * 1e3, 3) for d in plain_diffs],
    "plain_per_token_median_ms": statistics.median(plain_diffs) * 1e3}), flush=True)
