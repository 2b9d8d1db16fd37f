"""One benchmark point measured the plain way, in a fresh process, with nothing of the suite's harness: the
real configuration with random weights built by transformers directly, plain generate(), a synchronize and a
wall clock, the allocator's peak. What the suite's figures are checked against by hand.

    ssmbench plain phi --context 32768 131072            # time to first token, extra peak
    ssmbench plain mamba --context 2048 --new-tokens 33 --static-cache
    ssmbench plain phi --context 2048 --new-tokens 128 --batch 1 8 64    # throughput at batch

Prints one JSON line per context: seconds per call (each call timed alone), the extra peak over the weights
(max_memory_allocated() minus memory_allocated() before the calls) and each call's own peak over what was
allocated when it began (compiled: the first calls record CUDA graphs; compare the later ones); with three new
tokens or more, each call's median time between tokens as a streamer passed to generate() sees them; with
--batch, tokens per second end to end (batch x new tokens over the median call) and of decode alone (batch x
(new tokens - 1) over the median of each call less its own first token's time, as the suite's throughput points)
and the time to first token (each call's in first_token_s), all three over the calls after the first when there are
two or more (the first is a warm-up, as the suite leaves its first call out of its rounds; "seconds" keeps every
call); with --energy, NVML's total-energy counter read before and after each call (after its synchronize): each
call's joules and, over the calls after the first, joules per generated token (the suite's throughput figure).
Random token ids, greedy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):  # the host's clock at each hand-out: the prompt, then each token (after its .cpu())
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    from ssmbench.registry import ARCHS  # the configurations only

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", choices=sorted(ARCHS))
    parser.add_argument("--context", type=int, nargs="+", required=True, help="prompt lengths, one point each")
    parser.add_argument("--new-tokens", type=int, default=1, help="tokens each call generates (default 1: a "
                        "prefill)")
    parser.add_argument("--calls", type=int, default=3, help="calls per point, the first included (default 3)")
    parser.add_argument("--static-cache", action="store_true", help="cache_implementation='static' (compiled)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    parser.add_argument("--energy", action="store_true", help="read NVML's energy counter around each call")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: it measures the full-size model on one (the allocator's peak, a "
                     "synchronize); torch here sees none")
    energy_mj = None
    if args.energy:  # pynvml directly; the GPU torch sees first (CUDA_VISIBLE_DEVICES' first entry)
        import os

        import pynvml

        pynvml.nvmlInit()
        entry = (os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0")
        handle = (pynvml.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit()
                  else pynvml.nvmlDeviceGetHandleByUUID(entry))

        def energy_mj():
            return pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    arch = ARCHS[args.arch]
    config = AutoConfig.for_model(arch.model_type, **arch.synthetic_config)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    extra = {"cache_implementation": "static"} if args.static_cache else {}
    weights = torch.cuda.memory_allocated()
    for context, batch in itertools.product(args.context, args.batch):
        ids = torch.randint(100, 20000, (batch, context), device="cuda")
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        seconds, peaks, call_peaks, steps, firsts, status = [], [], [], [], [], "ok"
        joules, windows = [], []
        try:
            for _ in range(args.calls):
                call_before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                clock = Clock()
                if energy_mj is not None:
                    e0, t0 = energy_mj(), time.perf_counter()
                start = time.perf_counter()
                with torch.no_grad():
                    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                   pad_token_id=config.eos_token_id, streamer=clock, **extra)
                torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
                if energy_mj is not None:
                    joules.append((energy_mj() - e0) / 1e3)
                    windows.append(time.perf_counter() - t0)
                if len(clock.times) > 1:  # the first new token's time (clock.times[0] is the prompt's hand-out)
                    firsts.append(clock.times[1] - start)
                if args.new_tokens >= 3:  # the steps between new tokens (clock.times[0] is the prompt's)
                    gaps = [b - a for a, b in itertools.pairwise(clock.times[1:])]
                    steps.append(statistics.median(gaps))
                call_peaks.append(torch.cuda.max_memory_allocated())
                peaks.append((call_peaks[-1] - call_before) / 1e9)
        except torch.cuda.OutOfMemoryError:
            status = "oom"
            call_peaks.append(torch.cuda.max_memory_allocated())
        peak = max(call_peaks) - before
        new = args.new_tokens
        rates = {}
        warm = 1 if len(seconds) > 1 else 0  # the first call is a warm-up when there are others
        if seconds:
            rates["tokens_per_s"] = batch * new / statistics.median(seconds[warm:])
            rates["rates_over_calls"] = len(seconds) - warm
            if new > 1 and len(firsts) == len(seconds):
                rates["decode_tokens_per_s"] = batch * (new - 1) / statistics.median(
                    s - f for s, f in zip(seconds[warm:], firsts[warm:], strict=True))
                rates["ttft_s"] = statistics.median(firsts[warm:])
                rates["first_token_s"] = firsts
        if len(joules) > 1:  # the first call (warm-up, compilation) left out, as the suite's rounds leave it out
            rates["call_joules"], rates["energy_window_s"] = joules, windows
            rates["joules_per_token"] = sum(joules[1:]) / (batch * new * (len(joules) - 1))
        print(json.dumps({"arch": args.arch, "context": context, "batch": batch, "new_tokens": new, "status": status,
                          "static_cache": args.static_cache, "seconds": seconds,
                          "median_s": statistics.median(seconds) if seconds else None,
                          "step_median_s": steps, "ms_per_token": statistics.median(steps) * 1e3 if steps else None,
                          "extra_peak_gb": peak / 1e9, "call_extra_peaks_gb": peaks, "resident_before_gb": before / 1e9,
                          "weights_gb": weights / 1e9, **rates, "torch": torch.__version__}), flush=True)
        del ids
        torch.cuda.empty_cache()
    return 0
