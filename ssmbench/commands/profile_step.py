"""Issue #14: where the suite's CUDA-graph decode step loses time against mamba-ssm's own (native) step, kernel
by kernel. For one model and prompt length:

- the replayed step, as each backend runs it: ms per token over ``--steps`` graph replays (a synchronize and a
  clock around them all);
- the same step uncaptured under ``torch.profiler`` (CUDA activity): per kernel, launches and GPU microseconds
  per step, and per category (matmul, SSM scan/update, conv, norm, elementwise and copies, reduction, other).
  Kernels are what the graph replays; launch overhead is what the graph removes.

    PYTHONPATH=/tmp/kernels ssmbench profile-step --context 2048 --out $OUT/profile
    ssmbench profile-step --models tiny --device cpu --out /tmp/profile   # the suite's side only

Writes ``profile.json`` and ``PROFILE.md`` into ``--out``. Without mamba-ssm (or on a CPU) the native side is
left out with the reason.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import torch

from ssmbench.measure import synchronize

CATEGORIES = [  # first match wins
    ("matmul", r"gemm|gemv|cutlass|xmma|cublas|matmul|splitk|sm\d+_"),
    ("ssm", r"selective|scan|state_update|ssm"),
    ("conv", r"conv"),
    ("norm", r"norm|rms"),
    ("reduction", r"argmax|reduce|max|softmax"),
    ("elementwise/copy", r"elementwise|vectorized|copy|cast|fill|unrolled|mul|add|silu|softplus|exp|cat|index"),
]


def category(name: str) -> str:
    low = name.lower()
    return next((cat for cat, pattern in CATEGORIES if re.search(pattern, low)), "other")


def time_steps(step, steps: int, device: torch.device) -> float:
    """Seconds per call of ``step`` over ``steps`` calls (after 3 warm-up calls)."""
    for _ in range(3):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def kernel_profile(step, steps: int, device: torch.device) -> dict:
    """Per kernel (device-side events) launches and microseconds per step, and per category."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for _ in range(3):
        step()
    synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        on_device = getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA
        if device.type == "cuda" and not on_device:
            continue
        if device.type != "cuda" and (event.cpu_parent is not None or not event.name.startswith("aten::")):
            continue  # on a CPU: the top-level aten ops stand in for kernels
        duration = (event.device_time if on_device else event.cpu_time_total) if hasattr(event, "device_time") \
            else (event.cuda_time if on_device else event.cpu_time_total)
        kernels[event.name][0] += 1
        kernels[event.name][1] += duration
    rows = sorted(({"kernel": name, "launches_per_step": n / steps, "us_per_step": us / steps,
                    "category": category(name)} for name, (n, us) in kernels.items()),
                  key=lambda r: -r["us_per_step"])
    by_cat: dict[str, dict[str, float]] = defaultdict(lambda: {"launches_per_step": 0.0, "us_per_step": 0.0})
    for r in rows:
        by_cat[r["category"]]["launches_per_step"] += r["launches_per_step"]
        by_cat[r["category"]]["us_per_step"] += r["us_per_step"]
    return {"kernels": rows, "categories": dict(by_cat),
            "launches_per_step": sum(r["launches_per_step"] for r in rows),
            "kernel_us_per_step": sum(r["us_per_step"] for r in rows)}


def suite_side(lm, ids, steps: int) -> dict:
    from ssmbench.graphs import GraphedMambaDecoder

    decoder = GraphedMambaDecoder(lm.model)
    decoder.generate(ids, 2)  # prefill, static state, capture (on CUDA)
    slot = decoder.slot_for(ids.shape[0])
    out = {"path": "suite CUDA graph of the one-token step (ssmbench.graphs)"}
    if slot.graph is not None:
        out["replay_ms_per_step"] = 1e3 * time_steps(slot.graph.replay, steps, lm.device)
    with torch.no_grad():
        out["eager_step_ms"] = 1e3 * time_steps(lambda: decoder._step(slot), steps, lm.device)
        out["profile"] = kernel_profile(lambda: decoder._step(slot), steps, lm.device)
    return out


def native_side(lm, ids, steps: int) -> dict:
    from ssmbench import native

    why = native.unavailable(lm.spec.arch, lm.device)
    if why:
        return {"path": native.NATIVE, "unavailable": why}
    decoder = native.native_decoder(lm)
    decoder.generate(ids, 2 + 3 + steps)  # prefill and capture, for a length the timed steps stay within
    cache = decoder.model._decoding_cache
    params = cache.inference_params
    batch = ids.shape[0]
    token = torch.zeros(batch, 1, dtype=torch.long, device=ids.device)
    base = ids.shape[1] + 1
    position = torch.full((batch, 1), base, dtype=torch.long, device=ids.device)

    def replay():
        cache.run(token, position, base)

    def eager_step():
        params.seqlen_offset = base  # > 0: mamba-ssm's one-token step path, uncaptured
        decoder.model(token, inference_params=params, position_ids=position, num_last_tokens=1)

    out = {"path": native.NATIVE}
    with torch.inference_mode():
        out["replay_ms_per_step"] = 1e3 * time_steps(replay, steps, lm.device)
        out["eager_step_ms"] = 1e3 * time_steps(eager_step, steps, lm.device)
        out["profile"] = kernel_profile(eager_step, steps, lm.device)
    return out


def markdown(result: dict) -> str:
    sides = {k: v for k, v in result["sides"].items() if "profile" in v}
    lines = [f"# One decode step, kernel by kernel: {result['model']} @ {result['context']} tokens, batch "
             f"{result['batch']}, {result['dtype']}, {result['device']}", "",
             f"torch {result['torch']}, transformers {result['transformers']}. Command: `{result['command']}`", ""]
    for name, side in result["sides"].items():
        if "unavailable" in side:
            lines += [f"- {name}: not measured ({side['unavailable']})"]
    lines += ["- replayed graph: the suite's is `graph.replay()` alone; native's is mamba-ssm's `run()`, which also "
              "copies the token and position into the graph's inputs and clones the logits (a few microseconds)"]
    lines += ["", "| | " + " | ".join(sides) + " |", "| --- |" + " --- |" * len(sides)]
    rows = [("replayed graph, ms per step", lambda s: f"{s.get('replay_ms_per_step', float('nan')):.3f}"),
            ("uncaptured step, ms", lambda s: f"{s['eager_step_ms']:.3f}"),
            ("kernel time per step, ms", lambda s: f"{s['profile']['kernel_us_per_step'] / 1e3:.3f}"),
            ("kernel launches per step", lambda s: f"{s['profile']['launches_per_step']:.0f}")]
    cats = sorted({c for s in sides.values() for c in s["profile"]["categories"]})
    for cat in cats:
        rows.append((f"{cat}: ms (launches) per step", lambda s, cat=cat: (
            f"{s['profile']['categories'].get(cat, {}).get('us_per_step', 0) / 1e3:.3f} "
            f"({s['profile']['categories'].get(cat, {}).get('launches_per_step', 0):.0f})")))
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(s) for s in sides.values()) + " |")
    for name, side in sides.items():
        lines += ["", f"## {name}: the 15 costliest kernels", "", "| kernel | category | launches/step | us/step |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| `{r['kernel'][:90]}` | {r['category']} | {r['launches_per_step']:.1f} | {r['us_per_step']:.1f} |"
                  for r in side["profile"]["kernels"][:15]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import transformers

    from ssmbench.bench import prompt_ids
    from ssmbench.loading import load
    from ssmbench.registry import resolve_model_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="synthetic", choices=["synthetic", "tiny"])
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.context < 1 or args.batch < 1:
        parser.error("--steps, --context and --batch must be at least 1")
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    spec = next(s for s in resolve_model_set(args.models, archs=["mamba"]) if s.arch.key == "mamba")
    lm = load(spec, device, dtype)
    ids = prompt_ids(lm, args.context, batch=args.batch, seed=0)
    result = {"model": lm.name, "context": args.context, "batch": args.batch, "dtype": str(dtype).replace("torch.", ""),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "transformers": transformers.__version__,
              "command": "ssmbench profile-step " + " ".join(sys.argv[1:] if argv is None else argv),
              "sides": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name, side in (("suite graph", suite_side), ("native", native_side)):
        try:
            result["sides"][name] = side(lm, ids, args.steps)
        except Exception as exc:  # the other side's figures still count: written, with this one's error
            failed = True
            result["sides"][name] = {"unavailable": f"failed: {type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc()}
            traceback.print_exc()
        (args.out / "profile.json").write_text(json.dumps(result, indent=1))
    (args.out / "PROFILE.md").write_text(markdown(result))
    print(markdown(result))
    return 1 if failed else 0


