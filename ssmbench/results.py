"""The benchmark points of a run: kept in memory and written atomically after every point (so an
interrupted sweep keeps what it measured), then fitted (log-log slopes), compared (crossover contexts) and
rendered (terminal table, markdown, plots)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it over the target: a crash midway
    leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class ResultStore:
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)

    def add(self, point: dict[str, Any]) -> None:
        self.points.append(point)
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({"meta": self.meta, "points": self.points}, indent=1))

    def select(self, **match) -> list[dict[str, Any]]:
        """Points whose fields equal ``match``; ``backend`` counts a point without one as eager."""
        return [p for p in self.points
                if all((backend_of(p) if k == "backend" else p.get(k)) == v for k, v in match.items())]

    def models(self) -> list[str]:
        return list(dict.fromkeys(p["model"] for p in self.points))


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Slope of log y against log x (1: linear, 0: flat); None with fewer than 3 usable points."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pairs) < 3:
        return None
    x, y = np.log(np.array(pairs, dtype=float).T)
    return float(np.polyfit(x, y, 1)[0])


def backend_of(point: dict[str, Any]) -> str:
    return point.get("backend", "eager")


def series(store: ResultStore, model: str, kind: str, metric: str,
           backend: str = "eager") -> tuple[list[int], list[float]]:
    pts = sorted((p for p in store.select(model=model, kind=kind, status="ok", backend=backend)
                  if p.get(metric) is not None), key=lambda p: p["context"])
    return [p["context"] for p in pts], [p[metric] for p in pts]


def crossover(ctx_a: list[int], a: list[float], ctx_b: list[int], b: list[float]) -> str:
    """Where ``a`` (Mamba) becomes lower than ``b`` (the Transformer) and stays lower, over the contexts both
    measured (a context where either ran out of memory is not a comparison: the caller says so apart)."""
    values_b = dict(zip(ctx_b, b, strict=True))
    common = sorted(set(ctx_a) & set(values_b))
    if not common:
        return "not measured in this run" if not ctx_a or not values_b else "no context measured for both"
    wins = [a[ctx_a.index(c)] < values_b[c] for c in common]
    span = f"{common[0]}-{common[-1]}"
    if all(wins):
        return f"everywhere in {span}"
    if not wins[-1]:
        return f"nowhere in {span}" if not any(wins) else f"not at the longest context, {common[-1]} (range {span})"
    first = max(i for i, w in enumerate(wins) if not w) + 1
    return f"from {common[first]} tokens (range {span})"


# metric name -> (kind of point, field, verb for "Mamba is ... than the Transformer", per backend?)
PAIR_METRICS = {
    "prefill": ("prefill", "median_s", "faster", False),
    "decode": ("decode", "decode_s_per_token", "faster", True),
    "peak memory (prefill)": ("prefill", "extra_peak_bytes", "leaner", False),
    "cache": ("decode", "cache_bytes", "smaller", False),
    "energy per token (decode)": ("decode", "joules_per_token", "leaner", True),
}


def best_series(store: ResultStore, model: str, kind: str, metric: str) -> tuple[list[int], list[float], set[str]]:
    """Per context, the model's lowest figure over the backends measured there (and which backends won)."""
    best: dict[int, tuple[float, str]] = {}
    for p in store.select(model=model, kind=kind, status="ok"):
        value = p.get(metric)
        if value is not None and (p["context"] not in best or value < best[p["context"]][0]):
            best[p["context"]] = (value, backend_of(p))
    contexts = sorted(best)
    return contexts, [best[c][0] for c in contexts], {best[c][1] for c in contexts}


def _oom_note(store: ResultStore, models: list[str], kind: str, backend: str | None) -> str:
    notes = []
    for model in models:
        match = {"model": model, "kind": kind, "status": "oom"} | ({"backend": backend} if backend else {})
        ooms = sorted({p["context"] for p in store.select(**match)})
        if backend is None:  # best vs best: out of memory only where no backend ran
            ran = {p["context"] for p in store.select(model=model, kind=kind, status="ok")}
            ooms = [c for c in ooms if c not in ran]
        if ooms:
            notes.append(f"{model} out of memory at {', '.join(map(str, ooms))}")
    return f"; {'; '.join(notes)}" if notes else ""


def pairs(store: ResultStore) -> list[tuple[str, str]]:
    """(SSM, attention model) of the same source, every such pair."""
    by_source: dict[str, dict[str, list[str]]] = {}
    for p in store.points:
        models = by_source.setdefault(p["source"], {}).setdefault(p["family"], [])
        if p["model"] not in models:
            models.append(p["model"])
    return [(ssm, attn) for fams in by_source.values()
            for ssm in fams.get("ssm", []) for attn in fams.get("attention", [])]


def crossovers(store: ResultStore) -> dict[str, dict[str, str]]:
    """Per pair: where Mamba starts to beat the Transformer, per metric and, for decode, per backend and best
    vs best (each model's fastest backend at each context). Out of memory is reported as such, never as the
    other model winning."""
    out: dict[str, dict[str, str]] = {}
    for ssm, attn in pairs(store):
        found = {}
        for name, (kind, metric, verb, per_backend) in PAIR_METRICS.items():
            backends = sorted({backend_of(p) for p in store.select(kind=kind) if p["model"] in (ssm, attn)},
                              key=lambda b: (b != "eager", b)) if per_backend else ["eager"]
            for backend in backends:
                a, b = series(store, ssm, kind, metric, backend), series(store, attn, kind, metric, backend)
                if not a[0] and not b[0]:
                    continue
                label = f"{name}, {backend}" if per_backend else name
                found[f"{verb} ({label})"] = crossover(*a, *b) + _oom_note(store, [ssm, attn], kind, backend)
            if per_backend and len(backends) > 1:
                ca, va, wa = best_series(store, ssm, kind, metric)
                cb, vb, wb = best_series(store, attn, kind, metric)
                found[f"{verb} ({name}, best vs best)"] = (
                    crossover(ca, va, cb, vb) + _oom_note(store, [ssm, attn], kind, None)
                    + f" [best: {ssm} {'/'.join(sorted(wa)) or '-'}, {attn} {'/'.join(sorted(wb)) or '-'}]")
        out[f"{ssm} vs {attn}"] = found
    return out


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


def spread_of(point: dict[str, Any]) -> float | None:
    """The wider of the point's round-to-round and step-to-step spreads (None when neither was measured)."""
    values = [v for v in (point.get("rounds_spread"), point.get("step_spread")) if v is not None]
    return max(values) if values else None


def _timing_only(point: dict[str, Any]) -> bool:
    trained = point.get("trained_context")
    return bool(trained) and point["context"] > trained


def _model_lines(store: ResultStore, model: str) -> list[str]:
    pts = store.select(model=model)
    first = pts[0]
    params = first["params"]
    size = f"{params / 1e9:.3f} B" if params >= 1e8 else f"{params / 1e6:.2f} M"
    lines = [f"{model}  ({size} params, {first['dtype']}, loaded in {first.get('load_s', 0):.2f} s, "
             f"impl {first.get('impl', '-')})"]
    for q in store.select(model=model, kind="quickstart", status="ok"):
        lines.append(f"  quickstart ({backend_of(q)}): {q['new_tokens']} tokens in {q['median_s']:.3f} s "
                     f"({q['tokens_per_s']:.1f} tok/s), extra peak {_fmt(q.get('extra_peak_bytes'), 'GB')} GB"
                     + (f", first call {q['first_call_s']:.1f} s" if backend_of(q) != "eager" else ""))
    contexts = sorted({p["context"] for p in pts if p["kind"] in ("prefill", "decode")})
    if contexts:
        lines.append("  context | prefill ms | +-% | MFU % | mJ/prompt tok | decode ms/tok | +-% | floor ms | MBU % | "
                     "extra peak GB | cache MB | J/tok")
    timing_only = []
    for c in contexts:
        pre = next(iter(store.select(model=model, kind="prefill", context=c, backend="eager")), {})
        dec = next(iter(store.select(model=model, kind="decode", context=c, backend="eager")), {})
        label = f"{c}{'*' if any(_timing_only(p) for p in (pre, dec) if p) else ''}"
        if label.endswith("*"):
            timing_only.append(c)
        if "oom" in (pre.get("status"), dec.get("status")):
            where = " (prefill)" if pre.get("status") == "oom" else " (decode)"
            lines.append(f"  {label:>7} | out of memory{where}")
            continue
        lines.append(
            f"  {label:>7} | {_fmt(pre.get('median_s'), 'ms'):>10} | {_fmt(pre.get('rounds_spread'), '%'):>3} | "
            f"{_fmt(pre.get('mfu'), '%'):>5} | {_fmt(pre.get('prefill_joules_per_prompt_token'), 'mJ'):>13} | "
            f"{_fmt(dec.get('decode_s_per_token'), 'ms'):>13} | {_fmt(dec.get('step_spread'), '%'):>3} | "
            f"{_fmt(dec.get('floor_s'), 'ms'):>8} | {_fmt(dec.get('mbu'), '%'):>5} | "
            f"{_fmt(pre.get('extra_peak_bytes'), 'GB'):>13} | {_fmt(dec.get('cache_bytes'), 'MB'):>8} | "
            f"{_fmt(dec.get('joules_per_token'), 'J'):>5}")
    if timing_only:
        lines.append(f"  * beyond the trained context ({first.get('trained_context')} tokens): timing and memory "
                     "only, the outputs mean nothing")
    for d in sorted((p for p in store.select(model=model, kind="decode") if backend_of(p) != "eager"),
                    key=lambda p: (backend_of(p), p["context"])):
        if d["status"] != "ok":
            lines.append(f"  {backend_of(d)} decode @ {d['context']}: out of memory")
            continue
        lines.append(f"  {backend_of(d)} decode @ {d['context']}: {_fmt(d['decode_s_per_token'], 'ms')} ms/token "
                     f"(+-{_fmt(d.get('step_spread'), '%')} %), MBU {_fmt(d.get('mbu'), '%')} %, extra peak "
                     f"{_fmt(d.get('extra_peak_bytes'), 'GB')} GB, first call {d['first_call_s']:.1f} s (compilation "
                     f"~{'n/a' if d.get('compile_s') is None else format(d['compile_s'], '.1f')} s)"
                     + (f" [{d['decode_path']}]" if d.get("decode_path") else ""))
    for t in store.select(model=model, kind="throughput", status="ok"):
        lines.append(f"  throughput batch {t['batch']:3d} @ {t['context']}: {t['tokens_per_s']:.1f} tok/s")
    for t in store.select(model=model, kind="throughput", status="oom"):
        lines.append(f"  throughput batch {t['batch']:3d} @ {t['context']}: out of memory")
    return lines


def _name(p: dict[str, Any]) -> str:
    batch = f" batch {p['batch']}" if p.get("batch", 1) != 1 else ""
    return f"{p['model']} {p['kind']} @ {p['context']}{batch} ({backend_of(p)})"


def spread_lines(store: ResultStore) -> list[str]:
    """Points whose rounds or steps spread wider than SPREAD_FLAG, with their round counts."""
    wide = [p for p in store.select(status="ok")
            if (spread_of(p) or 0) > SPREAD_FLAG or p.get("target_met") is False]
    if not wide:
        return []
    lines = [f"spread over {SPREAD_FLAG * 100:g} % in {len(wide)} of {len(store.select(status='ok'))} points "
             "(rounds: max-min over median; steps: interquartile range over median):"]
    for p in wide:
        lines.append(f"  {_name(p)}: rounds {_fmt(p.get('rounds_spread'), '%')} %, steps "
                     f"{_fmt(p.get('step_spread'), '%')} %, {p.get('rounds')} rounds"
                     + (f" (auto, after {p['pilot_rounds']} pilot rounds: 95 % interval +-{_fmt(p.get('ci95'), '%')} %"
                        f"{'' if p.get('target_met') else ', target ' + _fmt(p.get('target'), '%') + ' % not met'})"
                        if p.get("pilot_rounds") else "")
                     + (" (one unwarmed call: timing off)" if p.get("rounds") == 1 else ""))
    return lines


def calibration_lines(store: ResultStore) -> list[str]:
    """The calibrated points: each figure as the suite measured it and as plain generate() did."""
    rows = [(p, c) for p in store.points for c in p.get("calibration", [])]
    if not rows:
        return []
    failed = sum(1 for p in store.points if p.get("calibration_failures"))
    lines = [f"calibration: {len({id(p) for p, _ in rows})} points re-measured plainly, {failed} over tolerance",
             "  point | figure | suite | plain | diff %"]
    for p, c in rows:
        unit = "GB" if c["figure"].endswith("bytes") else "ms"
        ok = "" if c["diff"] <= p["calibration_tolerance"] else f"  > {p['calibration_tolerance'] * 100:g} %"
        lines.append(f"  {_name(p)} | {c['figure']} | {_fmt(c['suite'], unit)} {unit} | {_fmt(c['plain'], unit)} "
                     f"{unit} | {c['diff'] * 100:.1f}{ok}")
    for p in store.points:
        for failure in p.get("calibration_failures", []):
            if "out of memory" in failure:
                lines.append(f"  {_name(p)}: {failure}")
    return lines


def summary_lines(store: ResultStore) -> list[str]:
    lines: list[str] = []
    for model in store.models():
        lines += _model_lines(store, model)
    lines += spread_lines(store)
    lines += calibration_lines(store)
    for pair, found in crossovers(store).items():
        lines.append(f"crossovers, {pair}:")
        lines += [f"  Mamba {k}: {v}" for k, v in found.items()]
    return lines


def write_report(store: ResultStore, folder: Path) -> list[Path]:
    """Markdown summary and log-log PNG plots (latency and memory against context, every model, the
    device's roofline floor where known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plots = [
        ("prefill", "median_s", "prefill time (s)", "prefill.png"),
        ("decode", "decode_s_per_token", "decode time per token (s)", "decode.png"),
        ("prefill", "extra_peak_bytes", "extra peak memory in prefill (bytes)", "memory.png"),
        ("decode", "cache_bytes", "cache / state (bytes)", "cache.png"),
    ]
    for kind, metric, label, name in plots:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for model in store.models():
            xs, ys = series(store, model, kind, metric)
            if xs:
                ax.loglog(xs, ys, marker="o", label=model)
            fx, fy = series(store, model, "decode", "floor_s") if metric == "decode_s_per_token" else ([], [])
            if fx:
                ax.loglog(fx, fy, linestyle="--", label=f"{model}: roofline floor ({store.meta.get('device', '')})")
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    md = ["# Scaling report", "", "```", *summary_lines(store), "```", ""]
    md += ["| model | metric | log-log slope |", "| --- | --- | --- |"]
    for model in store.models():
        for kind, metric, label, _ in plots:
            slope = loglog_slope(*series(store, model, kind, metric))
            md.append(f"| {model} | {label} | {'n/a' if slope is None else f'{slope:.2f}'} |")
    md += ["", *[f"![{name}]({name})" for *_, name in plots], ""]
    meta = store.meta
    if meta:
        md += ["## Run", "", *[f"- {k}: {v}" for k, v in meta.items()], ""]
    path = folder / "README.md"
    atomic_write_text(path, "\n".join(md))
    written.append(path)
    return written
