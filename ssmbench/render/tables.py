"""The terminal summary of a run: per model a table of its points, throughput by batch, spreads, calibration,
what faster paths leave on the table, and the crossovers."""

from __future__ import annotations

from typing import Any

from ..analysis import crossovers, pairing_line
from ..point import NATIVE, SUITE_GRAPH, TRANSFORMERS_EAGER, TRANSFORMERS_STATIC, Point
from ..store import ResultStore


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value * 1e3:.1f}"
    if unit == "GB":
        return f"{value / 1e9:.2f}"
    if unit == "MB":
        return f"{value / 1e6:.1f}"
    if unit == "%":
        return f"{value * 100:.1f}"
    if unit == "mJ":
        return f"{value * 1e3:.3f}"
    if unit == "J":
        return f"{value:.3f}"
    return str(value)


SPREAD_FLAG = 0.05  # the summary flags points whose rounds or steps spread wider than this


def spread_of(point: Point) -> float | None:
    """The wider of the point's round-to-round and step-to-step spreads (None when neither was measured)."""
    values = [v for v in (point.timing.rounds_spread, point.timing.step_spread) if v is not None]
    return max(values) if values else None


def _one(store: ResultStore, **match) -> Point | None:
    return next(iter(store.select(**match)), None)


def _model_lines(store: ResultStore, model: str) -> list[str]:
    pts = store.select(model=model)
    first = pts[0]
    size = f"{first.params / 1e9:.3f} B" if first.params >= 1e8 else f"{first.params / 1e6:.2f} M"
    lines = [f"{model}  ({size} params, {first.dtype}, loaded in {first.load_s or 0:.2f} s, impl {first.impl})"]
    for q in store.select(model=model, kind="quickstart", status="ok"):
        lines.append(f"  quickstart ({q.backend}): {q.new_tokens} tokens in {q.timing.median_s:.3f} s "
                     f"({q.timing.tokens_per_s:.1f} tok/s), extra peak {_fmt(q.memory.extra_peak_bytes, 'GB')} GB"
                     + (f", first call {q.timing.first_call_s:.1f} s" if q.backend != "eager" else ""))
    contexts = sorted({p.context for p in pts if p.kind in ("prefill", "decode")})
    if contexts:
        lines.append("  context | prefill ms | +-% | MFU % | mJ/prompt tok | decode ms/tok | +-% | floor ms | MBU % | "
                     "extra peak GB | cache MB | J/tok")
    timing_only = False
    for c in contexts:
        pre = _one(store, model=model, kind="prefill", context=c, backend="eager")
        dec = _one(store, model=model, kind="decode", context=c, backend="eager")
        here = [p for p in (pre, dec) if p is not None]
        label = f"{c}{'*' if any(p.timing_only for p in here) else ''}"
        timing_only |= label.endswith("*")
        if any(not p.ok for p in here):
            where = " (prefill)" if pre is not None and not pre.ok else " (decode)"
            lines.append(f"  {label:>7} | out of memory{where}")
            continue
        pt, pm, pr, pe = (pre.timing, pre.memory, pre.roofline, pre.energy) if pre else (None,) * 4
        dt, dm, dr, de = (dec.timing, dec.memory, dec.roofline, dec.energy) if dec else (None,) * 4
        lines.append(
            f"  {label:>7} | {_fmt(pt and pt.median_s, 'ms'):>10} | {_fmt(pt and pt.rounds_spread, '%'):>3} | "
            f"{_fmt(pr and pr.mfu, '%'):>5} | {_fmt(pe and pe.prefill_joules_per_prompt_token, 'mJ'):>13} | "
            f"{_fmt(dt and dt.decode_s_per_token, 'ms'):>13} | {_fmt(dt and dt.step_spread, '%'):>3} | "
            f"{_fmt(dr and dr.floor_s, 'ms'):>8} | {_fmt(dr and dr.mbu, '%'):>5} | "
            f"{_fmt(pm and pm.extra_peak_bytes, 'GB'):>13} | {_fmt(dm and dm.cache_bytes, 'MB'):>8} | "
            f"{_fmt(de and de.joules_per_token, 'J'):>5}")
    if timing_only:
        lines.append(f"  * beyond the trained context ({first.trained_context} tokens): timing and memory "
                     "only, the outputs mean nothing")
    for d in sorted((p for p in store.select(model=model, kind="decode") if p.backend != "eager"),
                    key=lambda p: (p.backend, p.context)):
        if not d.ok:
            lines.append(f"  {d.backend} decode @ {d.context}: out of memory")
            continue
        t = d.timing
        lines.append(f"  {d.backend} decode @ {d.context}: {_fmt(t.decode_s_per_token, 'ms')} ms/token "
                     f"(+-{_fmt(t.step_spread, '%')} %), MBU {_fmt(d.roofline.mbu, '%')} %, extra peak "
                     f"{_fmt(d.memory.extra_peak_bytes, 'GB')} GB, first call "
                     f"{'n/a' if t.first_call_s is None else format(t.first_call_s, '.1f')} s (compilation "
                     f"~{'n/a' if t.compile_s is None else format(t.compile_s, '.1f')} s)" + _settled(t)
                     + (f" [{d.decode_path}]" if d.decode_path else ""))
    lines += throughput_lines(store, model)
    return lines


def throughput_lines(store: ResultStore, model: str) -> list[str]:
    """Per backend and prompt length: a row per batch size (tokens/s end to end and of the decode alone, the
    batch's time to first token, extra peak memory, the cache), and the largest batch that fit."""
    points = store.select(model=model, kind="throughput")
    lines = []
    for backend, prompt in sorted({(p.backend, p.context) for p in points}, key=lambda k: (k[1], k[0])):
        rows = sorted((p for p in points if p.backend == backend and p.context == prompt), key=lambda p: p.batch)
        new = rows[0].new_tokens
        ok = [p.batch for p in rows if p.ok]
        oom = [p.batch for p in rows if p.status == "oom"]
        fits = (f"largest batch that fits: {max(ok) if ok else 'none'}"
                + (f" (out of memory at {min(oom)})" if oom else f" (no out of memory up to {max(ok)})" if ok else ""))
        lines.append(f"  throughput, {backend}, prompt {prompt}, {new} new tokens: {fits}")
        # over weights: what the backend holds between calls (a graph's static state and cache) plus the call's
        # extra peak -- comparable across backends, where the extra peak alone leaves a graph's state out
        lines.append("    batch | tok/s | decode tok/s | TTFT ms | extra peak GB | over weights GB | cache MB | J/tok")
        for p in rows:
            if not p.ok:
                lines.append(f"    {p.batch:5d} | {p.status}")
                continue
            t, m = p.timing, p.memory
            decode = "n/a" if t.decode_tokens_per_s is None else f"{t.decode_tokens_per_s:.1f}"
            over = m.over_weights_bytes
            lines.append(f"    {p.batch:5d} | {t.tokens_per_s:.1f} | {decode} | {_fmt(t.ttft_s, 'ms')} | "
                         f"{_fmt(m.extra_peak_bytes, 'GB')} | {_fmt(over, 'GB')} | {_fmt(m.cache_bytes, 'MB')} | "
                         f"{_fmt(p.energy.joules_per_token, 'J')}")
    return lines


def _settled(t) -> str:
    """How many calls a compiled or graphed point warmed up with before its rounds (until a call recorded no
    new CUDA graph)."""
    if t.settle_calls is None:
        return ""
    if t.graphs_settled:
        return f", rounds after {t.settle_calls} warm-up call{'s' if t.settle_calls > 1 else ''}"
    return f", STILL RECORDING CUDA graphs after {t.settle_calls} warm-up calls (rounds may include recordings)"


def _name(p: Point) -> str:
    batch = f" batch {p.batch}" if p.batch != 1 else ""
    return f"{p.model} {p.kind} @ {p.context}{batch} ({p.backend})"


def spread_lines(store: ResultStore) -> list[str]:
    """Points whose rounds or steps spread wider than SPREAD_FLAG (or that missed an auto target), with
    their round counts."""
    ok = store.select(status="ok")
    wide = [p for p in ok if (spread_of(p) or 0) > SPREAD_FLAG or p.timing.target_met is False]
    unsettled = [p for p in ok if p.timing.graphs_settled is False or p.timing.graph_clears_in_rounds]
    lines = [f"{_name(p)}: CUDA graphs recorded again in its rounds ({p.timing.graph_clears_in_rounds} workspace "
             f"clears; {p.timing.settle_calls} warm-up calls, settled: {p.timing.graphs_settled}): its rounds "
             "include recordings and the cuBLAS workspaces re-allocated after them" for p in unsettled]
    if not wide:
        return lines
    lines += [f"spread over {SPREAD_FLAG * 100:g} % in {len(wide)} of {len(ok)} points "
              "(rounds: max-min over median; steps: interquartile range over median):"]
    for p in wide:
        t = p.timing
        lines.append(f"  {_name(p)}: rounds {_fmt(t.rounds_spread, '%')} %, steps {_fmt(t.step_spread, '%')} %, "
                     f"{t.rounds} rounds"
                     + (f" (auto, after {t.pilot_rounds} pilot rounds: 95 % interval +-{_fmt(t.ci95, '%')} %"
                        f"{'' if t.target_met else ', target ' + _fmt(t.target, '%') + ' % not met'})"
                        if t.pilot_rounds else "")
                     + (" (one unwarmed call: timing off)" if t.rounds == 1 else ""))
    return lines


def calibration_lines(store: ResultStore) -> list[str]:
    """The calibrated points: each figure as the suite measured it and as plain generate() did."""
    from ..calibrate import NOISE_FACTOR

    asked = [p for p in store.points if p.calibration]
    calibrated = [p for p in asked if p.calibration.checks or p.calibration.failures or p.calibration.unresolved]
    if not asked:
        return []
    failed = sum(1 for p in calibrated if p.calibration.failures)
    unresolved = sum(1 for p in calibrated if p.calibration.unresolved and not p.calibration.failures)
    lines = [f"calibration: {len(calibrated)} points re-measured plainly, {failed} over tolerance"
             + (f", {unresolved} unresolved (over it within the host's noise, or out of memory: said below)"
                if unresolved else "")]
    if len(asked) > len(calibrated):
        lines.append(f"  {len(asked) - len(calibrated)} more selected with no figure to check (eager decode's time "
                     "per token is not calibrated, and a CPU has no peak memory to hold)")
    if not calibrated:
        return lines
    lines.append("  point | figure | suite (its call, alternating with plain; or the point's rounds) | plain | "
                 "suite/plain - 1, % (paired: 95 % interval of the median ratio; the point's rounds: the spread "
                 f"allowance, {NOISE_FACTOR:g}x the rounds' and plain calls' spread)")
    for p in calibrated:
        for c in p.calibration.checks:
            unit = "GB" if c["figure"].endswith("bytes") else "ms"
            fails = c.get("fails", c["diff"] > p.calibration.tolerance)  # schema-1 files have no "fails"
            ok = (f"  outside the {p.calibration.tolerance * 100:g} % band" if fails else
                  "  unresolved" if c.get("unresolved") else "")
            interval = (f" ({c['low'] * 100:+.1f} .. {c['high'] * 100:+.1f}, {c['pairs']} pairs)"
                        if c.get("low") is not None else
                        f" (allowance {NOISE_FACTOR * c['noise'] * 100:.0f} %)" if c.get("noise") else "")
            signed = (c["suite"] / c["plain"] - 1) * 100 if c["plain"] else float("inf")
            figure = c["figure"] + (" (point's rounds)" if c.get("of") == "point" else "")
            lines.append(f"  {_name(p)} | {figure} | {_fmt(c['suite'], unit)} {unit} | "
                         f"{_fmt(c['plain'], unit)} {unit} | {signed:+.1f}{interval}{ok}")
        lines += [f"  {_name(p)}: {note}" for note in p.calibration.unresolved if "out of memory" in note]
    return lines


def left_on_table_lines(store: ResultStore) -> list[str]:
    """Per model with native points: at each context, the native decode (the authors' own model and CUDA
    graph on the same weights) against transformers' best path -- by the path a point records, not its backend's
    name (Mamba's ``compiled`` on 4.x is the suite's graph) -- and the suite's graph: how much faster the same
    weights decode than transformers lets them."""

    lines: list[str] = []
    for model in store.models():
        decodes = [p for p in store.select(model=model, kind="decode", status="ok") if p.timing.decode_s_per_token]
        for context in sorted({p.context for p in decodes if p.decode_path == NATIVE}):
            at = [p for p in decodes if p.context == context]
            t = min(p.timing.decode_s_per_token for p in at if p.decode_path == NATIVE)
            theirs = [p for p in at if p.decode_path in (TRANSFORMERS_EAGER, TRANSFORMERS_STATIC)]
            graph = [p.timing.decode_s_per_token for p in at if p.decode_path == SUITE_GRAPH]
            if not lines:
                lines.append("what transformers leaves on the table (decode per token; native: the authors' own "
                             "model and CUDA graph on the same weights):")
            text = f"  {model} @ {context}: native {t * 1e3:.2f} ms"
            if theirs:
                best = min(theirs, key=lambda p: p.timing.decode_s_per_token)
                text += (f"; transformers' best {best.timing.decode_s_per_token * 1e3:.2f} ({best.backend}): "
                         f"{best.timing.decode_s_per_token / t:.2f}x")
            else:
                text += "; transformers not measured here"
            if graph:
                text += f"; suite graph {min(graph) * 1e3:.2f}: {min(graph) / t:.2f}x"
            lines.append(text)
    return lines


def summary_lines(store: ResultStore) -> list[str]:
    lines: list[str] = []
    for model in store.models():
        lines += _model_lines(store, model)
    unwarmed = [p for p in store.points if p.timing.unwarmed]
    if unwarmed:
        lines.append(f"{len(unwarmed)} of {len(store.points)} points are single unwarmed calls (timing off: "
                     "--benchmark-disable, or xdist): their times are no benchmark")
    lines += spread_lines(store)
    lines += calibration_lines(store)
    paired = pairing_line(store)
    if paired:
        lines.append(paired)
    for pair, found in crossovers(store).items():
        lines.append(f"crossovers, {pair} (Nx: how many times better the SSM's figure is at the largest context "
                     "or batch both ran -- over 1, the SSM better):")
        ssm = pair.split(" vs ")[0]
        arch = next((p.arch for p in store.points if p.model == ssm), "mamba")
        label = "Mamba" if arch == "mamba" else arch  # "mamba2 faster (prefill)": which SSM, not always Mamba
        lines += [f"  {label} {k}: {v}" for k, v in found.items()]
    lines += left_on_table_lines(store)
    return lines


# The report's plots against context: (point kind, figure, axis label, file); throughput-<prompt>.png besides.
