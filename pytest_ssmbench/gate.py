"""The regression gate: ``pytest -m gate``. A preset of points chosen so that each figure kind the suite gates on
is covered where it is stable from one machine to the next (``GPU_POINTS``, ``CPU_POINTS``: each says why it is
there), for the architectures of ``GATE_ARCHS`` (one line adds one). Against a baseline recorded by a gate run
(``--benchmark-compare``), each point's figures are held to their own allowance (``ssmbench.gatecheck``), a
point the baseline holds and this run lacks fails, and every point is reported with its change and allowance.
On a CPU only the exact figures are gated (timings of the tiny models move 20-40x on a loaded host; the
allocator's peak is a GPU figure), which the report says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ssmbench import gatecheck

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

active_key = pytest.StashKey[bool]()
gated_key = pytest.StashKey[set]()
rows_key = pytest.StashKey[list]()
notes_key = pytest.StashKey[list]()


def selected(markexpr: str | None) -> bool:
    return gatecheck.selected(markexpr)


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
    if not config.stash[active_key]:
        return
    options.set_preset(config, preset(gpu))
    if config.getoption("benchmark_compare", None):
        # pytest-benchmark keeps no figures with timing off, and none on an xdist controller: nothing to compare
        if config.getoption("benchmark_disable", False):
            raise pytest.UsageError("-m gate with --benchmark-compare and --benchmark-disable: with timing off no "
                                    "figure is kept, so nothing would be compared; drop --benchmark-disable")
        if config.getoption("numprocesses", None) or getattr(config, "workerinput", None) is not None:
            raise pytest.UsageError("-m gate with --benchmark-compare under xdist (-n): pytest-benchmark keeps no "
                                    "figures there, so nothing would be compared; run the gate with -n 0")


def active(config: pytest.Config) -> bool:
    return config.stash.get(active_key, False)


def gated(config: pytest.Config) -> set[str]:
    """Node ids of this run's gate points."""
    return config.stash.get(gated_key, set()) if active(config) else set()


def header(config: pytest.Config, gpu: bool) -> list[str]:
    if not active(config):
        return []
    shown = ", ".join(f"{k}={v if not isinstance(v, list) else ','.join(map(str, v))}"
                      for k, v in ((k, options.get(config, k)) for k in preset(gpu)))  # what runs, options applied
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


def report_refusal(path: Path, config: pytest.Config) -> str | None:
    """Why the gate's report must not be written at ``path``: a link, not a regular file, the results file, or an
    existing file an earlier gate report did not write (a README, a baseline)."""
    from ssmbench.gatecheck import REPORT_HEADER
    from ssmbench.safeio import not_regular

    why = not_regular(path)
    if why:
        return why
    results = options.get(config, "results_file")
    if results and Path(results).absolute() == path:
        return "it is also --ssm-results-file: the points would be replaced"
    if path.exists():
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().strip()
        except OSError as exc:
            return f"unreadable ({exc})"
        if first != REPORT_HEADER:
            return "exists and was not written by a gate report: it would be lost; move it or name another file"
    return None


def sessionfinish(session: pytest.Session, gpu: bool) -> None:
    config = session.config
    if not active(config):
        return
    current, compared = benchmark_adapter.current_and_compared(config)
    gated = config.stash.get(gated_key, set())
    notes = config.stash[notes_key]
    mine = [(b.name, dict(getattr(b, "extra_info", None) or {}), getattr(getattr(b, "stats", None), "median", None))
            for b in current if b.fullname in gated]
    rows: list[gatecheck.Row] = []
    if not compared:
        notes.append(f"{len(mine)} gate points measured; no baseline compared (--benchmark-compare): nothing gated")
    else:
        storage = Path(getattr(getattr(benchmark_adapter.session(config), "storage", None), "path", "."))
        try:
            machines, said = gatecheck.machine_allowances(storage) if gpu else (None, "")
        except ValueError as exc:
            machines, said = None, f"{exc}: the default between-machine allowance is used"
        if gpu:
            notes.append(said)
        else:
            notes.append("timings and memory are not gated on this device (cpu): only cache bytes, parameters and "
                         "tokens")
        for path, mapping in compared.items():  # a baseline not recorded by -m gate was refused (baselines.py)
            rows += gatecheck.compare(mine, {saved.get("name"): saved for saved in mapping.values()}, machines, gpu)
            notes.append(f"against {Path(path).name}")
        held = {r.name for r in rows}
        missing = sorted(name for name, _, _ in mine if name not in held)
        if missing:
            notes.append("not in the baseline, not gated: " + ", ".join(missing))
    config.stash[rows_key] = rows
    if any(r.failed for r in rows) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    report = options.get(config, "gate_report")
    if report:  # written whatever happened, so an earlier report never stands for this run
        from ssmbench.safeio import atomic_write_text

        atomic_write_text(Path(report), gatecheck.markdown(rows, notes))


def summary(terminalreporter, config: pytest.Config) -> None:
    if not active(config):
        return
    rows, notes = config.stash.get(rows_key, []), config.stash.get(notes_key, [])
    failed = [r for r in rows if r.failed]
    terminalreporter.write_sep("-", f"ssmbench gate: {len({r.name for r in rows})} points, {len(rows)} figures, "
                                    f"{len(failed)} past their allowance")
    for note in notes:
        terminalreporter.write_line(note)
    by_point: dict[str, list[gatecheck.Row]] = {}
    for r in rows:
        by_point.setdefault(r.name, []).append(r)
    show = gatecheck.show
    for name, point_rows in by_point.items():
        bad = any(r.failed for r in point_rows)
        shown = "; ".join(
            f"{'REGRESSION ' if r.failed else ''}{r.figure} {show(r.figure, r.then)} -> {show(r.figure, r.now)} "
            + (r.parts if r.now is None or r.then is None else f"{r.change:+.1%}"
               + (" (exact)" if r.allowance == 0 else f" (allowance {r.allowance:.1%}: {r.parts})"))
            for r in point_rows if r.failed or r.allowance or r.now != r.then)
        exact = [r.figure for r in point_rows if not r.allowance and not r.failed]
        terminalreporter.write_line(f"{'GATE REGRESSION ' if bad else 'ok '}{name}: {shown}"
                                    + (f"{'; ' if shown else ''}unchanged: {', '.join(exact)}" if exact else ""),
                                    red=bad)
