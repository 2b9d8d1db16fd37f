# ruff: noqa: B023  (the closures run within their loop iteration)
"""Why did the suite time Mamba's prefill at 512 tokens at 96 ms when plain generate() took 65 ms (2026-11-28
sweep)? One fresh process, the synthetic Mamba built by the suite, the same prompt; the variants alternate,
round-robin, so a drifting host moves them all alike:

  plain      lm.generate(ids, max_new_tokens=1): wall time around a synchronize (what calibration does)
  clock      the suite's StepClock as logits processor, NVML energy reads, return_dict_in_generate: its TTFT
  clock-wall the same call's wall time
  suite      the suite's own call (the eager backend's call + Runs.setup): its TTFT
  decode33   the suite's call with 33 new tokens (as a decode point): its TTFT

Run from the repository root: python tools/h200/prefill_probe.py [context ...]
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout

from ssmbench import (  # noqa: E402
    backends,  # noqa: E402
    loading,
    registry,
)
from ssmbench.bench import prompt_ids  # noqa: E402
from ssmbench.measure import Nvml, StepClock, synchronize  # noqa: E402
from ssmbench.runs import Runs  # noqa: E402

gpu = torch.cuda.is_available()  # off a GPU (a check of this script): the tiny Mamba on the CPU
spec = next(s for s in registry.resolve_model_set("synthetic" if gpu else "tiny") if s.family == "ssm")
lm = loading.load(spec, torch.device("cuda" if gpu else "cpu"), torch.bfloat16 if gpu else torch.float32)
nvml = Nvml()
for context in [int(c) for c in sys.argv[1:]] or [512]:
    ids = prompt_ids(lm, context)
    results: dict[str, list[float]] = {}

    def plain():
        synchronize(lm.device)
        t = time.perf_counter()
        lm.generate(ids, max_new_tokens=1, min_new_tokens=1)
        synchronize(lm.device)
        results.setdefault("plain", []).append(time.perf_counter() - t)

    def clock():
        c = StepClock(lm.device, nvml)
        synchronize(lm.device)
        t = time.perf_counter()
        with torch.no_grad():
            c.start()
            lm.generate(ids, max_new_tokens=1, min_new_tokens=1, logits_processor=[c], return_dict_in_generate=True)
            synchronize(lm.device)
        results.setdefault("clock-wall", []).append(time.perf_counter() - t)
        c.finish()
        results.setdefault("clock", []).append(c.intervals_s()[0])

    def suite(new_tokens, name):
        runs = Runs()
        call, setup = backends.get("eager").call(lm, ids, new_tokens, runs, nvml), runs.setup(lm.device)
        setup()
        call()
        results.setdefault(name, []).append(runs.intervals[0][0])

    variants = [plain, clock, lambda: suite(1, "suite"), lambda: suite(33, "decode33")]
    for _ in range(2):  # warm-up
        for v in variants:
            v()
    results.clear()
    for _ in range(7):
        for v in variants:
            v()
    print(json.dumps({"context": context, **{k: {"median_ms": statistics.median(v) * 1e3,
                                                  "all_ms": [round(x * 1e3, 1) for x in v]}
                                              for k, v in results.items()}}), flush=True)
