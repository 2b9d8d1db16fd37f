"""The fleet page's HTML: devices side by side, per figure, model and backend a plot (embedded as PNG data, no
network needed to view it) and a table with each device's figure, floor and ratio; every name escaped."""

from __future__ import annotations

import base64
import io

from ..fleet import FIGURES, Device, FleetError, disagreements, names, rows
from ..safeio import htm


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plot(fleet: list[Device], kind: str, model: str, backend: str, data) -> str:
    short = names(fleet)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, unit, scale = FIGURES[kind]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, d in enumerate(fleet):
        color = colors[i % len(colors)]
        cells = [(key[3], c) for key, cs in data if key[0] == model and key[2] == backend for c in [cs[i]] if c]
        shown = [(x, c.value * scale) for x, c in cells if c.value is not None]
        floors = [(x, c.floor * scale) for x, c in cells if c.floor]
        if shown:
            ax.plot(*zip(*shown, strict=True), "--" if d.projected else "-", marker="x" if d.projected else "o",
                    color=color, label=f"{short[i]}: {'projected (same bytes)' if d.projected else 'measured'}")
        if floors:
            ax.plot(*zip(*floors, strict=True), "--" if d.projected else ":", marker="x" if d.projected else None,
                    color=color, label=f"{short[i]}: roofline floor{' (projected)' if d.projected else ''}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel(f"{title} ({unit})")
    ax.set_title(f"{model}, {backend}: {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    png = _png(fig)
    plt.close(fig)
    return png


def _fmt(value: float | None, scale: float, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def render(fleet: list[Device], disagree: float = 25.0) -> str:
    """The page: devices, then per figure, model and backend a plot and a table."""
    e = htm
    if not any(rows(fleet, kind) for kind in FIGURES):
        raise FleetError("no prefill or decode points at batch 1 in " + ", ".join(d.source for d in fleet)
                         + ": nothing to put side by side")
    short = names(fleet)
    measured = sum(not d.projected for d in fleet)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ssmbench fleet</title><style>"
        "body{font-family:sans-serif;margin:1.5em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right;font-size:13px}th{background:#eee}"
        ".projected{color:#666;font-style:italic}.flag{background:#fdd}img{max-width:100%}</style></head><body>",
        "<h1>Devices side by side</h1>",
        "<p>Measured figures are baselines recorded on the device. A <span class='projected'>projected</span> device "
        "has no measurement yet: its roofline floors (its bandwidth and bf16 peak, with the measured device's bytes "
        "and parameters) and, for memory, the measured device's figure (the same bytes) -- not measurements; a "
        "real time lies above its floor by a factor the measured devices' 'x floor' columns suggest. A row is "
        f"<span class='flag'>flagged</span> where two measured devices' figure / floor ratios differ by more than "
        f"{disagree:g} %.</p><ul>",
    ]
    for d in fleet:
        p = d.profile
        parts.append(f"<li><b>{e(d.label)}</b>: {p.bandwidth_gbs or '?'} GB/s, "
                     f"{p.bf16_tflops if p.bf16_tflops is not None else '?'} TFLOP/s bf16, {p.memory_gb or '?'} GB"
                     f"{' unified' if p.integrated else ''}{f' ({e(p.note)})' if p.note else ''}; points from "
                     f"<code>{e(d.source)}</code></li>")
    parts.append("</ul>")
    flagged = 0
    for kind, (title, unit, scale) in FIGURES.items():
        data = rows(fleet, kind)
        if not data:
            continue
        parts.append(f"<h2>{e(title)}</h2>")
        for model, backend in sorted({(k[0], k[2]) for k, _ in data}):
            sub = [(k, c) for k, c in data if k[0] == model and k[2] == backend]
            parts.append(f"<h3>{e(model)}, {e(backend)}</h3>")
            parts.append(f"<img alt='{e(model)} {e(backend)} {e(title)}' "
                         f"src='data:image/png;base64,{_plot(fleet, kind, model, backend, sub)}'>")
            head = "".join(f"<th>{e(n)}{' (projected)' if d.projected else ''} {unit}</th>"
                           + ("<th>floor</th><th>x floor</th>" if kind != "memory" else "")
                           for n, d in zip(short, fleet, strict=True))
            parts.append(f"<table><tr><th>context</th>{head}<th>flag</th></tr>")
            for key, cells in sub:
                flags = disagreements(cells, disagree)
                flagged += bool(flags)
                tds = []
                for c in cells:
                    cls = " class='projected'" if c and c.projected else ""
                    if c is None:
                        tds.append("<td>-</td>" + ("<td></td><td></td>" if kind != "memory" else ""))
                        continue
                    shown = (c.status if c.status != "ok" else "projected: floor only" if c.projected
                             else "n/a") if c.value is None else _fmt(c.value, scale)
                    tds.append(f"<td{cls}>{e(shown)}</td>")
                    if kind != "memory":
                        tds.append(f"<td{cls}>{_fmt(c.floor, scale, 3)}</td><td{cls}>"
                                   f"{'n/a' if c.ratio is None else f'{c.ratio:.1f}'}</td>")
                note = "; ".join(f"{short[i]} vs {short[j]}: ratios {d:.0f} % apart" for i, j, d in flags)
                parts.append(f"<tr{' class=flag' if flags else ''}><td>{e(key[3])}</td>{''.join(tds)}"
                             f"<td>{e(note)}</td></tr>")
            parts.append("</table>")
    parts.append(f"<p id='summary'>{flagged} row(s) flagged.</p>" if measured > 1 else
                 "<p id='summary'>One measured device: no two to compare, so nothing can be flagged.</p>")
    # For a headless browser's check: every plot decoded and laid out.
    parts.append("<script>window.addEventListener('load',function(){var i=document.images,ok=i.length>0;"
                 "for(var k=0;k<i.length;k++){ok=ok&&i[k].complete&&i[k].naturalWidth>0;}"
                 "document.body.setAttribute('data-rendered',ok?'yes':'no');"
                 "document.body.setAttribute('data-images',i.length);});</script></body></html>")
    return "\n".join(parts)
