"""The scaling report: a Markdown summary (the verdict tables, the terminal summary, slopes, the run's settings)
and PNG plots, written only into a folder that is empty or made by a report, each file through a temporary one."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Callable

from ..analysis import _pools, loglog_slope, pairs, series
from ..point import Point
from ..safeio import atomic_write_bytes, atomic_write_text, claim_report_folder, in_code_block
from ..safeio import md as md_text
from ..store import ResultStore
from ..verdicts import BATCH_FIGURES, THROUGHPUT_FIGURES, batch_verdict, throughput_verdict
from .tables import summary_lines


def verdict_tables(store: ResultStore) -> list[str]:
    """Markdown: per pair and prompt length, the by-batch verdicts as one table -- a row per figure, a column per
    backend and best-of pool -- each cell where Mamba starts to win and the ratio at the largest batch both ran
    (the summary's verdicts, computed again and shortened; a best-of pool that gives best vs best's says so)."""
    md: list[str] = []
    ratio = re.compile(r"^\d+\.\d+x at batch \d+")
    # (row name, verdict of (ssm, attn, prompt, backend or None, pool) -> text or None)
    rows: list[tuple[str, Callable[..., str | None]]] = [
        (f"throughput, {name}", lambda s_, a_, c, b, pool, f=figure: throughput_verdict(store, s_, a_, c, b, f, pool))
        for name, figure in THROUGHPUT_FIGURES.items()]
    rows += [(name, lambda s_, a_, c, b, pool, f=figure: batch_verdict(store, s_, a_, c, b, f, pool))
             for name, figure in BATCH_FIGURES.items()]

    def shorten(text: str | None) -> str:
        if text is None:
            return "n/a"
        if text.startswith("no figure for "):  # its reason is the summary's line, below
            return f"no figure for {text.split()[3]} (the summary says why)"
        parts = text.split(" [best:")[0].split("; ")
        cell = parts[0] + (f", {parts[1].split(',')[0]}" if len(parts) > 1 and ratio.match(parts[1]) else "")
        if len(parts) > 1 and "(within the points' spread" in parts[1]:
            cell += " (within the points' spread)"
        cell = f"only {cell.split()[1]} ran it" if cell.startswith("only ") else cell  # "only m measured ..."
        # what the summary's line adds that changes the reading: each at its best, and where either ran out
        extra = [p for p in parts[1:] if p.startswith("each at its most") or " out of memory from batch " in p]
        return "; ".join([cell, *extra])

    for ssm, attn in pairs(store):
        throughput = [p for p in store.select(kind="throughput") if p.model in (ssm, attn)]
        for prompt in sorted({p.context for p in throughput}):
            at_prompt = [p for p in throughput if p.context == prompt]
            backends = sorted({p.backend for p in at_prompt}, key=lambda b: (b != "eager", b))
            columns: list[tuple[str, str | None, Callable[[Point], bool] | None]] = [(b, b, None) for b in backends]
            if len(backends) > 1:
                columns += [(name, None, pool) for name, pool in _pools(at_prompt)]
            table = []
            for name, verdict in rows:
                best = verdict(ssm, attn, prompt, None, None) if len(backends) > 1 else None
                cells = []
                for label, backend, pool in columns:
                    text = verdict(ssm, attn, prompt, backend, pool)
                    same = pool is not None and label != "best vs best" and text is not None and text == best
                    cells.append("as best vs best" if same else md_text(shorten(text)))
                if any(c != "n/a" for c in cells):
                    table.append(f"| {name} | " + " | ".join(cells) + " |")
            if table:
                md += [f"### {md_text(ssm)} vs {md_text(attn)}, prompt {prompt}: where Mamba wins, by batch", "",
                       "Each cell: from which batch Mamba's figure is better, and how many times better at the "
                       "largest batch both ran (over 1: Mamba better).", "",
                       "| figure | " + " | ".join(label for label, _, _ in columns) + " |",
                       "|" + " --- |" * (len(columns) + 1), *table, ""]
    return md


CONTEXT_PLOTS = (
    ("prefill", "median_s", "prefill time (s)", "prefill.png"),
    ("decode", "decode_s_per_token", "decode time per token (s)", "decode.png"),
    ("prefill", "extra_peak_bytes", "extra peak memory in prefill (bytes)", "memory.png"),
    ("decode", "cache_bytes", "cache / state (bytes)", "cache.png"),
)


def write_report(store: ResultStore, folder: Path) -> list[Path]:
    """Markdown summary and log-log PNG plots (latency and memory against context, every model, the
    device's roofline floor where known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claim_report_folder(folder, "scaling report")  # empty, or made by a report: nothing of a user's is replaced
    written: list[Path] = []

    def save(fig, path: Path) -> None:  # through a temporary file: a link planted at the name is replaced
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=110, format="png")
        plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())
    # Only the plots something was measured for (a throughput-only run has no context plots, nor slopes).
    plots = [plot for plot in CONTEXT_PLOTS if any(series(store, m, plot[0], plot[1])[0] for m in store.models())]
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
        save(fig, path)
        written.append(path)
    images = [name for *_, name in plots]
    throughput = store.select(kind="throughput", status="ok")
    for prompt in sorted({p.context for p in throughput}):
        # Tokens per second against batch, a line per model and backend (the Mamba paper's Figure 8): end to end
        # and decode alone side by side; an x where a line ran out of memory (at its last tokens/s).
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for ax, (figure_name, figure) in zip(axes, THROUGHPUT_FIGURES.items(), strict=True):
            for model in store.models():
                for backend in sorted({p.backend for p in throughput if p.model == model and p.context == prompt}):
                    pts = sorted((p for p in throughput if p.model == model and p.context == prompt
                                  and p.backend == backend and getattr(p.timing, figure) is not None),
                                 key=lambda p: p.batch)
                    if not pts:
                        continue
                    (line,) = ax.loglog([p.batch for p in pts], [getattr(p.timing, figure) for p in pts],
                                        marker="o", label=f"{model}, {backend}", base=2)
                    oom = sorted(p.batch for p in store.select(model=model, kind="throughput", status="oom",
                                                               context=prompt, backend=backend))
                    if oom:
                        ax.plot([oom[0]], [getattr(pts[-1].timing, figure)], marker="x", markersize=10,
                                color=line.get_color(), linestyle="none")
            ax.set_xlabel("batch size (x: out of memory)")
            ax.set_ylabel(f"tokens/s, {figure_name}")
            ax.set_title(f"prompt {prompt}, {throughput[0].new_tokens} new tokens", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:  # a figure no point has (decode alone of a one-token run)
                ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"throughput-{prompt}.png"
        save(fig, folder / name)
        written.append(folder / name)
        images.append(name)
    md = ["# Scaling report", "", *verdict_tables(store), "```", *map(in_code_block, summary_lines(store)), "```", ""]
    if plots:
        md += ["| model | metric | log-log slope |", "| --- | --- | --- |"]
    for model in store.models():
        for kind, metric, label, _ in plots:
            slope = loglog_slope(*series(store, model, kind, metric))
            md.append(f"| {md_text(model)} | {label} | {'n/a' if slope is None else f'{slope:.2f}'} |")
    md += ["", *[f"![{name}]({name})" for name in images], ""]
    meta = dict(store.meta)
    if meta.get("dtype") == "auto":  # the option; each model resolves it (bfloat16 full-size on a GPU, ...)
        dtypes = sorted({f"{p.model} {p.dtype}" for p in store.points if p.dtype})
        meta["dtype"] = "auto: " + ", ".join(dtypes) if dtypes else "auto"
    if meta:
        md += ["## Run", "", *[f"- {md_text(k)}: {md_text(v)}" for k, v in meta.items()], ""]
    path = folder / "README.md"
    atomic_write_text(path, "\n".join(md))
    written.append(path)
    # A plot an earlier report left in the folder that this one does not draw (a prompt or figure this run did not
    # measure) would be read as this run's: removed. Only names a report writes; nothing else in the folder.
    ours = {name for *_, name in CONTEXT_PLOTS}
    for old in folder.glob("*.png"):
        if old not in written and (old.name in ours or re.fullmatch(r"throughput-\d+\.png", old.name)):
            old.unlink()
    return written
