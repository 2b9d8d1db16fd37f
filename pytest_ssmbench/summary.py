"""The terminal summary after a benchmark run: per model the table, the spread and calibration tables, the
crossovers (``ssmbench.results``), the scaling report, the memory gate and refused baselines, and a warning
when Mamba ran on transformers' slow reference loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssmbench import impl, results
from ssmbench.safeio import UnsafeOutput, printable

from . import baselines, benchmark_adapter, gate, kernels, options
from .settings import nothing_checked, settings
from .sweep import bench_settings


def write_report(tr, store: results.ResultStore, folder: Path) -> None:
    """The scaling report, after the summary: a failure to write it is said, and hides nothing."""
    try:
        for path in results.write_report(store, folder):
            tr.write_line(f"scaling report: {path}")
    except (OSError, UnsafeOutput) as exc:  # the summary above stands; the points file has every point
        tr.write_line(f"scaling report not written to {folder}: {type(exc).__name__}: {exc}", red=True)


def write(terminalreporter, config: pytest.Config) -> None:
    b, s, tr = bench_settings(config), settings(config), terminalreporter
    why = nothing_checked(config)
    if why:
        tr.write_sep("!", "nothing was checked (exit code 5)", red=True)
        tr.write_line(why, red=True)
    if b.store.points:
        tr.section("ssmbench: Mamba vs Transformer")
        bandwidth = "unknown" if b.profile.bandwidth_gbs is None else f"{b.profile.bandwidth_gbs:g} GB/s"
        flops = "unknown" if b.profile.bf16_tflops is None else f"{b.profile.bf16_tflops:g} TFLOP/s"
        tr.write_line(f"device {b.profile.name}: peak bandwidth {bandwidth}, bf16 peak {flops}")
        for line in results.summary_lines(b.store):
            tr.write_line(line)
        if b.store.write_error:
            tr.write_line(f"points NOT written to {printable(b.store.moved_to or b.store.path)}: "
                          f"{printable(b.store.write_error)}; the {len(b.store.points)} points of this run are in this "
                          "summary only", red=True, bold=True)
        elif b.store.written_to and b.store.moved_to:
            tr.write_line(f"points written to {b.store.moved_to}: another run took {b.store.path} meanwhile",
                          yellow=True)
        elif b.store.written_to:
            tr.write_line(f"points written to {b.store.path}")
        if b.store.replaced:
            count, backup = b.store.replaced
            tr.write_line(f"{b.store.path} held {count} points of an earlier run: replaced, kept as {backup}",
                          yellow=True)
        folder = options.get(config, "scaling_report")
        if folder:
            write_report(tr, b.store, Path(folder))
    regressions, refusals, uncompared = baselines.summary_lines(config)
    if uncompared and not refusals:
        tr.write_line(f"not in the baseline, so not compared: {len(uncompared)} benchmark(s): "
                      + ", ".join(uncompared[:5]) + (" ..." if len(uncompared) > 5 else ""), yellow=True)
    for line in regressions:
        tr.write_line(line, red=True, bold=True)
    gate.summary(tr, config)
    if benchmark_adapter.regressed(config):  # said where it was caught too, wherever that came in the output
        tr.write_line(benchmark_adapter.REGRESSED, red=True, bold=True)
    for message in refusals:
        tr.write_sep("!", "baseline comparison refused (exit code 4); this run's results were still saved", red=True)
        tr.write_line(message, red=True)
    pinned = kernels.summary_line(config)
    if pinned:
        tr.write_line(f"ssmbench: {pinned}")
    slow = sorted({x.arch.key for x in s.specs if x.arch.kernels and s.device.type == "cuda"
                   and not x.arch.unsupported() and impl.scan_on_reference(x.arch, s.device)})
    if slow:
        tr.write_sep("!", f"{', '.join(slow)} ran on transformers' reference PyTorch loop, not the CUDA kernels",
                     red=True)
        tr.write_line("Install mamba-ssm and causal-conv1d: any timing of these from this run is the slow fallback's "
                      "(conformance results still hold for the reference path).", red=True)
