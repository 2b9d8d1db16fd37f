"""What a run's points say, per pair (an SSM and the Transformer of its size): scaling slopes against context, and
where the SSM's figure becomes better and stays better (crossovers), behind ``generate()`` and best vs best."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .point import TRANSFORMERS_EAGER, TRANSFORMERS_STATIC, Point
from .store import ResultStore
from .verdicts import BATCH_FIGURES, THROUGHPUT_FIGURES, batch_verdict, crossover, throughput_verdict  # noqa: F401


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Slope of log y against log x (1: linear, 0: flat); None with fewer than 3 usable points."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pairs) < 3:
        return None
    x, y = np.log(np.array(pairs, dtype=float).T)
    return float(np.polyfit(x, y, 1)[0])


def series(store: ResultStore, model: str, kind: str, metric: str,
           backend: str = "eager") -> tuple[list[int], list[float]]:
    pts = sorted((p for p in store.select(model=model, kind=kind, status="ok", backend=backend)
                  if p.figure(metric) is not None), key=lambda p: p.context)
    return [p.context for p in pts], [p.figure(metric) for p in pts]


PAIR_METRICS = {
    "prefill": ("prefill", "median_s", "faster", False),
    "decode": ("decode", "decode_s_per_token", "faster", True),
    "peak memory (prefill)": ("prefill", "extra_peak_bytes", "leaner", False),
    "cache": ("decode", "cache_bytes", "smaller", False),
    "energy per token (decode)": ("decode", "joules_per_token", "leaner", True),
}


def behind_generate(p: Point) -> bool:
    """Measured through transformers' own generate() (eager, or its compiled static cache): what a user of the
    generate() API gets, as against the suite's graph of the step or mamba-ssm's own model."""
    return p.decode_path in (TRANSFORMERS_EAGER, TRANSFORMERS_STATIC)


def best_series(store: ResultStore, model: str, kind: str, metric: str,
                pool: Callable[[Point], bool] | None = None) -> tuple[list[int], list[float], set[str]]:
    """Per context, the model's lowest figure over the backends measured there (those ``pool`` keeps), and which
    backends won."""
    best: dict[int, tuple[float, str]] = {}
    for p in store.select(model=model, kind=kind, status="ok"):
        if pool is not None and not pool(p):
            continue
        value = p.figure(metric)
        if value is not None and (p.context not in best or value < best[p.context][0]):
            best[p.context] = (value, p.backend)
    contexts = sorted(best)
    return contexts, [best[c][0] for c in contexts], {best[c][1] for c in contexts}


def _oom_note(store: ResultStore, models: list[str], kind: str, backend: str | None) -> str:
    notes = []
    for model in models:
        match = {"model": model, "kind": kind, "status": "oom"} | ({"backend": backend} if backend else {})
        ooms = sorted({p.context for p in store.select(**match)})
        if backend is None:  # best vs best: out of memory only where no backend ran
            ran = {p.context for p in store.select(model=model, kind=kind, status="ok")}
            ooms = [c for c in ooms if c not in ran]
        if ooms:
            notes.append(f"{model} out of memory at {', '.join(map(str, ooms))}")
    return f"; {'; '.join(notes)}" if notes else ""


# Why a point that ran has no figure for a metric, where the point says (the energy counter's window).
_FIGURE_NOTES = {"joules_per_token": "energy_note", "prefill_joules_per_prompt_token": "prefill_energy_note"}


def _no_figure_note(store: ResultStore, model: str, kind: str, metric: str, backend: str) -> str:
    """'' if ``model`` has no point of ``kind`` with ``backend`` that ran; else why those points have no
    ``metric`` figure (their notes, or that they do not say)."""
    ran = store.select(model=model, kind=kind, status="ok", backend=backend)
    if not ran:
        return ""
    field = _FIGURE_NOTES.get(metric)
    noted = [p for p in sorted(ran, key=lambda p: p.context) if field and getattr(p.energy, field)]
    return f"{len(ran)} point{'s' if len(ran) > 1 else ''} ran; " + (
        f"at {noted[-1].context}: {getattr(noted[-1].energy, field)}" if noted else "they give no reason")


def sizes(store: ResultStore) -> dict[str, float]:
    """Each model's size for pairing: the published parameter count of the model it stands for (a tiny model
    stands for its full-size architecture), else the parameters it ran with; 0 where neither is known."""
    return {p.model: p.size_params or float(p.params or 0) for p in store.points}


def pairs(store: ResultStore) -> list[tuple[str, str]]:
    """(SSM or hybrid, attention model) of the same source: each SSM or hybrid with the attention model of its
    size among the run's (nearest by parameter ratio; all that are equally near), so the 9.8B Bamba is compared
    with an 8B Transformer where the run has one, not a 3B one. Where a size is unknown (older points files),
    with every attention model of its source."""
    size = sizes(store)
    by_source: dict[str, dict[str, list[str]]] = {}
    for p in store.points:
        models = by_source.setdefault(p.source, {}).setdefault(p.family, [])
        if p.model not in models:
            models.append(p.model)
    found = []
    for fams in by_source.values():
        attention = fams.get("attention", [])
        for ssm in fams.get("ssm", []) + fams.get("hybrid", []):
            if not size.get(ssm) or not all(size.get(a) for a in attention):
                found += [(ssm, attn) for attn in attention]
                continue
            apart = {a: abs(math.log(size[ssm] / size[a])) for a in attention}
            nearest = min(apart.values(), default=0.0)
            found += [(ssm, a) for a in attention if apart[a] <= nearest * (1 + 1e-9)]
    return found


def pairing_line(store: ResultStore) -> str | None:
    """The summary's line naming the pairs and the sizes they were paired by (None: no pair)."""
    size = sizes(store)
    found = pairs(store)
    if not found:
        return None

    def named(model: str) -> str:
        return f"{model} ({size[model] / 1e9:.2f}B)" if size.get(model, 0) >= 1e8 else model

    return "pairs, each SSM or hybrid with the attention model of its size: " + "; ".join(
        f"{named(ssm)} with {named(attn)}" for ssm, attn in found)


def _pools(points: list[Point]) -> list[tuple[str, Callable[[Point], bool] | None]]:
    """The best-of comparisons worth a line: best vs best always; best behind generate() where some backend
    measured is not behind it and some is."""
    pools: list[tuple[str, Callable[[Point], bool] | None]] = [("best vs best", None)]
    inside = {behind_generate(p) for p in points}
    if inside == {True, False}:
        pools.append(("best behind generate()", behind_generate))
    return pools


def crossovers(store: ResultStore) -> dict[str, dict[str, str]]:
    """Per pair: where Mamba starts to beat the Transformer, per metric and, for decode, per backend and best
    vs best (each model's fastest backend at each context). Out of memory is reported as such, never as the
    other model winning."""
    out: dict[str, dict[str, str]] = {}
    for ssm, attn in pairs(store):
        found = {}
        for name, (kind, metric, verb, per_backend) in PAIR_METRICS.items():
            backends = sorted({p.backend for p in store.select(kind=kind) if p.model in (ssm, attn)},
                              key=lambda b: (b != "eager", b)) if per_backend else ["eager"]
            for backend in backends:
                a, b = series(store, ssm, kind, metric, backend), series(store, attn, kind, metric, backend)
                if not a[0] and not b[0]:
                    continue
                label = f"{name}, {backend}" if per_backend else name
                if bool(a[0]) != bool(b[0]):  # e.g. the graphed backend, which only Mamba-1 has
                    only, other = (ssm, attn) if a[0] else (attn, ssm)
                    why = _no_figure_note(store, other, kind, metric, backend)
                    found[f"{verb} ({label})"] = (
                        (f"no {name} figure for {other} with {backend} ({why}), only for {only}" if why
                         else f"only {only} measured with {backend}, not {other}")
                        + _oom_note(store, [ssm, attn], kind, backend))
                    continue
                found[f"{verb} ({label})"] = crossover(*a, *b) + _oom_note(store, [ssm, attn], kind, backend)
            if per_backend and len(backends) > 1:
                for pool_name, pool in _pools([p for p in store.select(kind=kind) if p.model in (ssm, attn)]):
                    ca, va, wa = best_series(store, ssm, kind, metric, pool)
                    cb, vb, wb = best_series(store, attn, kind, metric, pool)
                    if not ca and not cb:
                        continue
                    text = (crossover(ca, va, cb, vb) + _oom_note(store, [ssm, attn], kind, None)
                            + f" [best: {ssm} {'/'.join(sorted(wa)) or '-'}, {attn} {'/'.join(sorted(wb)) or '-'}]")
                    if text != found.get(f"{verb} ({name}, best vs best)"):  # the same line twice says nothing
                        found[f"{verb} ({name}, {pool_name})"] = text
        throughput = [p for p in store.select(kind="throughput") if p.model in (ssm, attn)]
        for prompt in sorted({p.context for p in throughput}):
            at_prompt = [p for p in throughput if p.context == prompt]
            backends = sorted({p.backend for p in at_prompt}, key=lambda b: (b != "eager", b))
            lines = [(b, b, None) for b in backends]
            if len(backends) > 1:
                lines += [(None, pool_name, pool) for pool_name, pool in _pools(at_prompt)]
            for figure_name, figure in THROUGHPUT_FIGURES.items():
                for backend, label, pool in lines:
                    text = throughput_verdict(store, ssm, attn, prompt, backend, figure, pool)
                    best = f"higher throughput, {figure_name} (best vs best, prompt {prompt}, by batch)"
                    if pool is None or text != found.get(best):
                        found[f"higher throughput, {figure_name} ({label}, prompt {prompt}, by batch)"] = text
            for figure_name, figure in BATCH_FIGURES.items():
                for backend, label, pool in lines:
                    text = batch_verdict(store, ssm, attn, prompt, backend, figure, pool)
                    best = f"{figure.verb} ({figure_name}, best vs best, prompt {prompt}, by batch)"
                    if text is not None and (pool is None or text != found.get(best)):
                        found[f"{figure.verb} ({figure_name}, {label}, prompt {prompt}, by batch)"] = text
        out[f"{ssm} vs {attn}"] = found
    return out
