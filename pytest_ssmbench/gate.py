"""The regression gate: ``pytest -m gate``. A preset of points chosen so that each figure kind the suite gates on
is covered where it is stable from one machine to the next (``GPU_POINTS``, ``CPU_POINTS``: each says why it is
there), for the architectures of ``GATE_ARCHS`` (one line adds one). Against a baseline
(``--benchmark-compare``), each point's figures are held to their own allowance, not one global percentage:

- time (a prefill's call, a decode step, a throughput step): a floor, plus twice the baseline's own spread
  between rounds, plus the difference measured between two machines on unchanged code (``gate-allowances.json``
  beside the baseline, written by ``ssmbench gate-allowances``; a default where none was measured, said so);
- extra peak memory: a floor plus the between-machine difference;
- cache bytes, parameters and tokens generated: exactly.

On a CPU only the exact figures are gated: timings of the tiny models move 20-40x on a loaded host and the
allocator's peak is a GPU figure; the report says so. Every point is reported with its change and allowance;
a point past its allowance fails the session (exit 1), named."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import benchmark_adapter, options

# architecture -> (its eager backend, its fastest GPU decode backend). One line adds an architecture to the gate.
GATE_ARCHS: dict[str, tuple[str, str]] = {
    "mamba": ("eager", "graphed"),  # the suite's CUDA graph of the step: transformers' compile costs 50-100 s a shape
    "phi": ("eager", "compiled"),
}


@dataclass(frozen=True)
class GatePoint:
    kind: str  # prefill, decode, throughput
    at: int  # context (prefill, decode) or prompt (throughput)
    batch: int
    backend: str  # "eager" or "fast": the architecture's fastest GPU decode backend (GATE_ARCHS)
    why: str


GPU_POINTS = (
    GatePoint("prefill", 8192, 1, "eager",
              "time to first token and extra peak memory of a long prompt: GPU-bound (0.1-1 % between rounds on "
              "the H200), the activations a prefill holds at its peak"),
    GatePoint("decode", 2048, 1, "fast",
              "time per token of the fastest decode (a CUDA graph, torch.compile): GPU-bound, 0.1-2 % between rounds"),
    GatePoint("decode", 2048, 1, "eager",
              "time per token of plain generate(): launch-bound, it follows the host's CPU; gated within its own "
              "measured spread and the difference between machines, so it catches only large slowdowns"),
    GatePoint("throughput", 2048, 16, "fast",
              "a batch's decode step and memory (the Mamba paper's prompt 2048): weights and cache read once a "
              "step for 16 sequences"),
    GatePoint("throughput", 2048, 64, "fast",
              "the same at batch 64, where the cache's bytes dominate a Transformer's step and memory"),
)
CPU_POINTS = (
    GatePoint("prefill", 64, 1, "eager", "parameters, cache bytes and the token count of a prefill"),
    GatePoint("decode", 32, 1, "eager", "cache bytes after decoding and the exact number of new tokens"),
    GatePoint("throughput", 32, 4, "eager", "the cache of a batch of 4 and its token count"),
)
KIND_OF_TEST = {"test_latency_prefill": "prefill", "test_latency_decode": "decode", "test_throughput": "throughput"}

TIME_FLOOR, MEMORY_FLOOR = 0.02, 0.01
SPREAD_FACTOR = 2.0  # times the baseline's relative range between rounds
DEFAULT_MACHINES = {"time": 0.10, "memory": 0.02}  # where no between-machine difference was measured
MACHINE_MARGIN = 1.5  # times the difference two machines showed: two machines are a small sample
ALLOWANCES_FILE = "gate-allowances.json"
EXACT = ("cache_bytes", "params", "tokens_seen")

active_key = pytest.StashKey[bool]()
gated_key = pytest.StashKey[set]()
rows_key = pytest.StashKey[list]()
notes_key = pytest.StashKey[list]()


def selected(markexpr: str | None) -> bool:
    """Whether ``-m`` asks for the gate: the word ``gate``, not negated."""
    expr = markexpr or ""
    return bool(re.search(r"(?<![\w-])gate(?![\w-])", expr)) and not re.search(r"\bnot\s+gate\b", expr)


def preset(gpu: bool) -> dict[str, Any]:
    """The options the gate runs with (a value on the command line still wins)."""
    points = GPU_POINTS if gpu else CPU_POINTS
    contexts = sorted({p.at for p in points if p.kind != "throughput"})
    backends = ["eager"] + sorted({fast for _, fast in GATE_ARCHS.values()} if gpu else set())
    return {"models": "synthetic" if gpu else "tiny", "archs": list(GATE_ARCHS), "contexts": contexts,
            "backends": backends, "batch_sizes": sorted({p.batch for p in points if p.kind == "throughput"}),
            "throughput_prompts": sorted({p.at for p in points if p.kind == "throughput"}),
            "throughput_new_tokens": 32 if gpu else 8, "decode_tokens": 32 if gpu else 8}


def configure(config: pytest.Config, gpu: bool) -> None:
    """Before the run's settings are read: ``-m gate`` turns the preset on."""
    config.stash[active_key] = selected(config.getoption("markexpr", None))
    config.stash[gated_key] = set()
    config.stash[rows_key] = []
    config.stash[notes_key] = []
    if config.stash[active_key]:
        options.set_preset(config, preset(gpu))


def active(config: pytest.Config) -> bool:
    return config.stash.get(active_key, False)


def header(config: pytest.Config, gpu: bool) -> list[str]:
    if not active(config):
        return []
    shown = ", ".join(f"{k}={v if not isinstance(v, list) else ','.join(map(str, v))}"
                      for k, v in preset(gpu).items())
    return [f"ssmbench: gate preset (-m gate): {shown}" + ("" if gpu else "; on a CPU only cache bytes, parameters "
                                                                       "and token counts are gated, not timings")]


def point_of(item: pytest.Item) -> tuple[str, str, int, int, str] | None:
    """(architecture, kind, context or prompt, batch, backend) of a benchmark item of the sweep, else None."""
    kind = KIND_OF_TEST.get(getattr(item, "originalname", ""))
    params = getattr(getattr(item, "callspec", None), "params", {})
    spec = params.get("spec")
    if kind is None or spec is None:
        return None
    at = params.get("prompt") if kind == "throughput" else params.get("context")
    return spec.arch.key, kind, at, params.get("batch", 1), params.get("backend", "eager")


def mark_items(config: pytest.Config, items: list[pytest.Item], gpu: bool) -> None:
    """The ``gate`` mark on the items that are gate points (before ``-m`` selects), whatever the run's options."""
    points = GPU_POINTS if gpu else CPU_POINTS
    for item in items:
        found = point_of(item)
        if not found or found[0] not in GATE_ARCHS:
            continue
        arch, kind, at, batch, backend = found
        eager, fast = GATE_ARCHS[arch]
        for p in points:
            wanted = eager if p.backend == "eager" else fast
            if (p.kind, p.at, p.batch, wanted) == (kind, at, batch, backend):
                item.add_marker(pytest.mark.gate)
                config.stash.setdefault(gated_key, set()).add(item.nodeid)


def machine_allowances(storage: Path) -> tuple[dict, str]:
    """Between-machine allowances beside the baseline ({benchmark name: {figure: fraction}}) and where they
    come from, in words."""
    path = storage / ALLOWANCES_FILE
    if not path.is_file():
        return {}, (f"no {ALLOWANCES_FILE} in {storage}: between-machine allowance {DEFAULT_MACHINES['time']:.0%} "
                    f"time, {DEFAULT_MACHINES['memory']:.0%} memory (a default, not measured)")
    try:
        data = json.loads(path.read_text())
        points = data["points"]
        if not isinstance(points, dict) or not all(
                isinstance(v, dict) and all(isinstance(x, (int, float)) and math.isfinite(x) and x >= 0
                                            for x in v.values()) for v in points.values()):
            raise ValueError("points: not {name: {figure: fraction >= 0}}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise pytest.UsageError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return points, f"between-machine allowances from {path} ({data.get('measured', 'how: not said')})"


def figures(info: dict, median: float | None, gpu: bool) -> dict[str, tuple[float | None, float | None]]:
    """A point's gated figures: {figure: (value, relative spread between rounds or None)}."""
    found: dict[str, tuple[float | None, float | None]] = {}
    if gpu:
        time = median if info.get("kind") == "prefill" else info.get("decode_s_per_token")
        found["time"] = (time, info.get("rounds_spread"))
        found["memory"] = (info.get("extra_peak_bytes"), None)
    for key in EXACT:
        found[key] = (info.get(key), None)
    return found


@dataclass
class Row:
    name: str
    figure: str
    then: float
    now: float
    allowance: float  # fraction; 0: exact
    parts: str

    @property
    def change(self) -> float:
        return (self.now - self.then) / self.then if self.then else (0.0 if self.now == self.then else math.inf)

    @property
    def failed(self) -> bool:
        return self.now != self.then if self.allowance == 0 else self.change > self.allowance


def compare(current: list[tuple[str, dict, float | None]], baseline: dict[str, dict], machines: dict,
            default_machines: bool, gpu: bool) -> list[Row]:
    """Rows for every gated figure of every current point the baseline holds. ``current``: (name, extra_info,
    median); ``baseline``: {name: saved benchmark}."""
    rows = []
    for name, info, median in current:
        old = baseline.get(name)
        if not old:
            continue
        now_figs = figures(info, median, gpu)
        then_figs = figures(old.get("extra_info") or {}, (old.get("stats") or {}).get("median"), gpu)
        for figure, (now, _) in now_figs.items():
            then, spread = then_figs.get(figure, (None, None))
            if now is None or then is None:
                continue
            if figure in EXACT:
                rows.append(Row(name, figure, then, now, 0.0, "exact"))
                continue
            floor = TIME_FLOOR if figure == "time" else MEMORY_FLOOR
            between = DEFAULT_MACHINES[figure] if default_machines else machines.get(name, {}).get(figure, 0.0)
            own = SPREAD_FACTOR * spread if spread else 0.0
            rows.append(Row(name, figure, then, now, floor + own + between,
                            f"floor {floor:.0%} + spread {own:.1%} + machines {between:.1%}"))
    return rows


def show(figure: str, value: float) -> str:
    if figure == "time":
        return f"{value * 1e3:.3f} ms"
    if figure in ("memory", "cache_bytes"):
        return f"{value / 1e6:.2f} MB"
    return f"{value:g}"


def sessionfinish(session: pytest.Session, gpu: bool) -> None:
    config = session.config
    if not active(config):
        return
    current, compared = benchmark_adapter.current_and_compared(config)
    gated = config.stash.get(gated_key, set())
    notes = config.stash[notes_key]
    mine = [(b.name, dict(getattr(b, "extra_info", None) or {}), getattr(getattr(b, "stats", None), "median", None))
            for b in current if b.fullname.replace("\\", "/") in gated or b.fullname in gated]
    if not compared:
        notes.append(f"{len(mine)} gate points measured; no baseline compared (--benchmark-compare): nothing gated")
        return
    bs = benchmark_adapter.session(config)
    storage = Path(getattr(getattr(bs, "storage", None), "path", "."))
    machines, said = machine_allowances(storage) if gpu else ({}, "")
    if gpu:
        notes.append(said)
    else:
        notes.append("timings and memory are not gated on this device (cpu): only cache bytes, parameters and tokens")
    rows = []
    for path, mapping in compared.items():
        baseline = {saved.get("name"): saved for saved in mapping.values()}
        rows += compare(mine, baseline, machines, not machines, gpu)
        notes.append(f"against {Path(path).name}")
    missing = sorted({name for name, _, _ in mine} - {r.name for r in rows})
    if missing:
        notes.append("not in the baseline, not gated: " + ", ".join(missing))
    config.stash[rows_key] = rows
    if any(r.failed for r in rows) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    report = options.get(config, "gate_report")
    if report:
        from ssmbench.safeio import atomic_write_text

        atomic_write_text(Path(report), markdown(rows, notes))


def markdown(rows: list[Row], notes: list[str]) -> str:
    lines = ["| point | figure | baseline | this run | change | allowance | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        allowance = "exact" if r.allowance == 0 else f"{r.allowance:.1%} ({r.parts})"
        lines.append(f"| {r.name} | {r.figure} | {show(r.figure, r.then)} | {show(r.figure, r.now)} | "
                     f"{r.change:+.1%} | {allowance} | {'REGRESSION' if r.failed else 'ok'} |")
    return "\n".join([*(f"- {n}" for n in notes), "", *lines, ""])


def summary(terminalreporter, config: pytest.Config) -> None:
    if not active(config):
        return
    rows, notes = config.stash.get(rows_key, []), config.stash.get(notes_key, [])
    failed = [r for r in rows if r.failed]
    terminalreporter.write_sep("-", f"ssmbench gate: {len({r.name for r in rows})} points, {len(rows)} figures, "
                                    f"{len(failed)} past their allowance")
    for note in notes:
        terminalreporter.write_line(note)
    by_point: dict[str, list[Row]] = {}
    for r in rows:
        by_point.setdefault(r.name, []).append(r)
    for name, point_rows in by_point.items():
        bad = any(r.failed for r in point_rows)
        shown = "; ".join(
            f"{'REGRESSION ' if r.failed else ''}{r.figure} {show(r.figure, r.then)} -> {show(r.figure, r.now)} "
            f"{r.change:+.1%}" + (" (exact)" if r.allowance == 0 else f" (allowance {r.allowance:.1%}: {r.parts})")
            for r in point_rows if r.failed or r.allowance or r.now != r.then)
        exact = [r.figure for r in point_rows if not r.allowance and not r.failed]
        terminalreporter.write_line(f"{'GATE REGRESSION ' if bad else 'ok '}{name}: {shown}"
                                    + (f"{'; ' if shown else ''}unchanged: {', '.join(exact)}" if exact else ""),
                                    red=bad)
