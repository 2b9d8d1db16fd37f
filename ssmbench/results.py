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


def crossover(ctx_a: list[int], a: list[float], ctx_b: list[int], b: list[float], oom_b: list[int] = ()) -> str:
    """Where ``a`` (Mamba) becomes lower than ``b`` (the Transformer) and stays lower, over the contexts both
    measured; a context where ``b`` ran out of memory and ``a`` did not counts as a win for ``a``."""
    values_b = dict(zip(ctx_b, b, strict=True)) | {c: float("inf") for c in oom_b}
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


# metric name -> (kind of point, field, verb for "Mamba is ... than the Transformer")
PAIR_METRICS = {
    "prefill": ("prefill", "median_s", "faster"),
    "decode": ("decode", "decode_s_per_token", "faster"),
    "peak memory": ("prefill", "extra_peak_bytes", "leaner"),
    "cache": ("decode", "cache_bytes", "smaller"),
}


def crossovers(store: ResultStore) -> dict[str, dict[str, str]]:
    """Per source (tiny, synthetic, pretrained): where Mamba starts to beat the Transformer, per metric."""
    out: dict[str, dict[str, str]] = {}
    by_source: dict[str, dict[str, str]] = {}
    for p in store.points:
        by_source.setdefault(p["source"], {})[p["family"]] = p["model"]
    for fams in by_source.values():
        if {"ssm", "attention"} <= fams.keys():
            ssm, attn = fams["ssm"], fams["attention"]
            found = {}
            for name, (kind, metric, verb) in PAIR_METRICS.items():
                oom = [p["context"] for p in store.select(model=attn, kind=kind, status="oom", backend="eager")]
                found[f"{verb} ({name})"] = crossover(*series(store, ssm, kind, metric),
                                                      *series(store, attn, kind, metric), oom)
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
    return str(value)


def summary_lines(store: ResultStore) -> list[str]:
    lines: list[str] = []
    for model in store.models():
        pts = store.select(model=model)
        first = pts[0]
        params = first["params"]
        size = f"{params / 1e9:.3f} B" if params >= 1e8 else f"{params / 1e6:.2f} M"
        lines.append(f"{model}  ({size} params, {first['dtype']}, loaded in {first.get('load_s', 0):.2f} s, "
                     f"impl {first.get('impl', '-')})")
        for q in store.select(model=model, kind="quickstart", status="ok"):
            lines.append(f"  quickstart ({backend_of(q)}): {q['new_tokens']} tokens in {q['median_s']:.3f} s "
                         f"({q['tokens_per_s']:.1f} tok/s), extra peak {_fmt(q.get('extra_peak_bytes'), 'GB')} GB"
                         + (f", first call {q['first_call_s']:.1f} s" if backend_of(q) != "eager" else ""))
        contexts = sorted({p["context"] for p in pts if p["kind"] in ("prefill", "decode")})
        if contexts:
            lines.append("  context | prefill ms | MFU % | decode ms/tok | floor ms | MBU % | extra peak GB | cache MB "
                         "| J/tok")
        for c in contexts:
            pre = next(iter(store.select(model=model, kind="prefill", context=c, backend="eager")), {})
            dec = next(iter(store.select(model=model, kind="decode", context=c, backend="eager")), {})
            if "oom" in (pre.get("status"), dec.get("status")):
                where = " (prefill)" if pre.get("status") == "oom" else " (decode)"
                lines.append(f"  {c:7d} | out of memory{where}")
                continue
            lines.append(
                f"  {c:7d} | {_fmt(pre.get('median_s'), 'ms'):>10} | {_fmt(pre.get('mfu'), '%'):>5} | "
                f"{_fmt(dec.get('decode_s_per_token'), 'ms'):>13} | {_fmt(dec.get('floor_s'), 'ms'):>8} | "
                f"{_fmt(dec.get('mbu'), '%'):>5} | {_fmt(pre.get('extra_peak_bytes'), 'GB'):>13} | "
                f"{_fmt(dec.get('cache_bytes'), 'MB'):>8} | "
                f"{'n/a' if dec.get('joules_per_token') is None else format(dec['joules_per_token'], '.3f'):>5}"
            )
        for d in sorted((p for p in store.select(model=model, kind="decode") if backend_of(p) != "eager"),
                        key=lambda p: (backend_of(p), p["context"])):
            if d["status"] != "ok":
                lines.append(f"  {backend_of(d)} decode @ {d['context']}: out of memory")
                continue
            lines.append(f"  {backend_of(d)} decode @ {d['context']}: {_fmt(d['decode_s_per_token'], 'ms')} ms/token, "
                         f"MBU {_fmt(d.get('mbu'), '%')} %, first call {d['first_call_s']:.1f} s (compilation "
                         f"~{'n/a' if d.get('compile_s') is None else format(d['compile_s'], '.1f')} s)"
                         + (f" [{d['decode_path']}]" if d.get("decode_path") else ""))
        for t in store.select(model=model, kind="throughput", status="ok"):
            lines.append(f"  throughput batch {t['batch']:3d} @ {t['context']}: {t['tokens_per_s']:.1f} tok/s")
        for t in store.select(model=model, kind="throughput", status="oom"):
            lines.append(f"  throughput batch {t['batch']:3d} @ {t['context']}: out of memory")
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
