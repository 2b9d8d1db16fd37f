"""Baselines: the environment stored with each pytest-benchmark result, refusing comparisons across GPUs or
model sets (a foreign or unreadable baseline is named, nothing is compared against it, this run is still
saved, and the session exits 4), and the gates pytest-benchmark does not have: peak memory, and a decode point's
time per token (its own timer sees the whole call, prefill included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from . import benchmark_adapter, gate, options
from .settings import settings
from .sweep import bench_settings

# machine_info fields a baseline must share with the run that compares against it.
# Not "models": a baseline compares the benchmarks it holds by name, so a run on more architectures (or fewer)
# still compares what both measured, and adding an architecture never invalidates a stored baseline.
MUST_MATCH = ("gpu_name", "model_set", "dtype_policy")
MEMORY_FIELDS = ("extra_peak_bytes",)

refusals_key = pytest.StashKey[list]()  # comparisons refused: unreadable or foreign baselines
refused_baselines_key = pytest.StashKey[list]()
memory_key = pytest.StashKey[list]()
uncompared_key = pytest.StashKey[list]()  # this run's benchmarks no compared baseline holds


STATS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ops", "total", "iqr_outliers",
         "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "rounds", "iterations")


def invalid_baseline(data: dict) -> str | None:
    """Why a pytest-benchmark file cannot be compared against (None: it can): each benchmark named, each of its
    statistics a finite number not below zero, and the figures the suite gates on (extra_info) finite numbers
    too. A NaN median passed a run 1.64x slower; a string ended in a TypeError after the sweep."""
    import math

    info = data.get("machine_info")
    injected = info.get("ssm_inject") if isinstance(info, dict) else None
    if injected:
        return f"recorded with a deliberate regression (--ssm-inject {injected}): not a baseline"
    for i, bench in enumerate(data.get("benchmarks", [])):
        if not isinstance(bench, dict) or not isinstance(bench.get("fullname"), str) \
                or not isinstance(bench.get("stats"), dict):
            return f"benchmark {i}: not a benchmark (no fullname or stats)"
        for key in STATS:
            value = bench["stats"].get(key)
            if key in ("median", "mean", "min", "max") and value is None:
                return f"{bench['fullname']}: stats.{key} missing"
            if value is None or key in ("outliers",):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                return f"{bench['fullname']}: stats.{key} is {value!r}, not a finite number >= 0"
        info = bench.get("extra_info") or {}
        if not isinstance(info, dict):
            return f"{bench['fullname']}: extra_info is not an object"
        for key in (*MEMORY_FIELDS, "decode_s_per_token", "rounds_spread", "cache_bytes", "params", "tokens_seen",
                    "tokens_seen_max"):
            value = info.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or (value < 0 and key != "decode_s_per_token")):
                return f"{bench['fullname']}: extra_info.{key} is {value!r}, not a finite number >= 0"
    return None


def configure(config: pytest.Config) -> None:
    """Before pytest-benchmark loads the baselines to compare against: a file it cannot parse would crash
    it, so read them here first; on a bad one compare nothing, but still run and save this run."""
    config.stash[refusals_key] = []
    config.stash[refused_baselines_key] = []
    benchmark_adapter.patch_file_storage()
    benchmark_adapter.patch_display()
    compare = config.getoption("benchmark_compare", None)
    storage_url = config.getoption("benchmark_storage", None) or ""
    if not compare or ("://" in storage_url and not storage_url.startswith("file://")):
        return  # nothing to compare, or elasticsearch storage (pytest-benchmark reports its own errors)
    storage = benchmark_adapter.file_storage(storage_url)
    files = storage.query("[0-9][0-9][0-9][0-9]_")[-1:] if compare is True else storage.query(compare)
    if not files:
        # pytest-benchmark only warns (and, with --benchmark-compare-fail, stops in a traceback): a gate asked to
        # compare against a baseline that is not there must not pass as if it had compared
        there = sorted(str(Path(f).relative_to(storage.path)) for f in storage.query("*/[0-9][0-9][0-9][0-9]_"))
        config.stash[refusals_key].append(
            f"--benchmark-compare{'' if compare is True else '=' + str(compare)}: no baseline file in {storage.path} "
            f"matches it (there: {', '.join(there[:8]) + (' ...' if len(there) > 8 else '') if there else 'none'}); "
            "nothing was compared")
    for path in files:
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict) or "benchmarks" not in data or "machine_info" not in data:
                raise ValueError("not a pytest-benchmark file (no 'benchmarks' or 'machine_info')")
            if not isinstance(data["machine_info"], dict) or not isinstance(data["benchmarks"], list):
                raise ValueError("not a pytest-benchmark file ('machine_info' is not a mapping or 'benchmarks' "
                                 "not a list)")
            if why := invalid_baseline(data):
                raise ValueError(why)
        except (OSError, ValueError) as exc:
            config.stash[refusals_key].append(f"baseline file {path} is unreadable: {type(exc).__name__}: {exc}")
    if config.stash[refusals_key]:
        config.option.benchmark_compare = False
        config.option.benchmark_compare_fail = None


def header(config: pytest.Config) -> list[str]:
    """The session header's word on comparisons already refused at configure (no matching baseline file, an
    unreadable one): said before the sweep, not only after it, so a user can stop a long run that will not compare."""
    return [f"ssmbench: comparison refused before the run (the run still happens, saved where asked; it exits 4): {why}"
            for why in config.stash.get(refusals_key, [])]


def update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import transformers

    s, b = settings(config), bench_settings(config)
    gpu = s.device.type == "cuda"
    machine_info.update({
        "gpu_name": torch.cuda.get_device_name(s.device) if gpu else "none",
        "gpu_driver": b.nvml.driver(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model_set": s.model_set,
        "models": ",".join(x.name for x in s.specs if not x.unavailable),
        "dtype_policy": s.dtype,
        "mamba_impl": b.impl,
        "ssmbench_gate": gate.active(config),  # recorded by pytest -m gate: the gate compares only such baselines
    })


def compare_machine_info(config: pytest.Config, benchmarksession, machine_info: dict, compared_benchmark: dict) -> None:
    """Refuse a comparison across GPUs or model sets: its differences would say nothing about the code."""
    saved = compared_benchmark.get("machine_info", {})
    differ = [f"{k}: baseline {saved.get(k)!r}, this run {machine_info.get(k)!r}"
              for k in MUST_MATCH if saved.get(k) != machine_info.get(k)]
    if gate.active(config) and not saved.get("ssmbench_gate"):
        differ.append("ssmbench_gate: the baseline was not recorded by a gate run (pytest -m gate)")
    if differ:
        # Refuse the comparison, not the run: this run is still measured and saved, sessionstart drops this
        # baseline from what pytest-benchmark compares, and the session ends with exit code 4.
        config.stash[refused_baselines_key].append(compared_benchmark)
        config.stash[refusals_key].append(
            f"refusing to compare against the baseline in {benchmarksession.storage}: it was measured "
            "elsewhere or on other models.\n  " + "\n  ".join(differ) + "\nRecord a baseline for this "
            "machine first (README, 'Baselines and the regression gate')."
        )
        return
    for k in ("torch", "transformers", "mamba_impl", "gpu_driver"):
        if saved.get(k) != machine_info.get(k):
            benchmarksession.logger.warning(f"baseline {k} {saved.get(k)!r} differs from this run's "
                                            f"{machine_info.get(k)!r}; differences may come from that")


def _growths(current: list, compared_mapping: dict, key: str, threshold_pct: float, show, label: str) -> list[str]:
    """Benchmarks whose ``extra_info[key]`` grew past the threshold against any compared baseline: a line each,
    starting with ``label``."""
    found = []
    for bench in current:
        info = getattr(bench, "extra_info", None) or {}
        for path, mapping in compared_mapping.items():
            old = mapping.get(bench.fullname)
            if not old:
                continue
            now, then = info.get(key), (old.get("extra_info") or {}).get(key)
            if now is None or not then:
                continue
            growth = 100.0 * (now - then) / then
            if growth > threshold_pct:
                found.append(f"{label} {bench.fullname}: {key} {show(then)} -> {show(now)} "
                             f"(+{growth:.1f} % > {threshold_pct:g} %, baseline {Path(path).name})")
    return found


def memory_regressions(current: list, compared_mapping: dict, threshold_pct: float) -> list[str]:
    """Points whose memory grew past the threshold against any compared baseline."""
    return [line for key in MEMORY_FIELDS
            for line in _growths(current, compared_mapping, key, threshold_pct, lambda v: f"{v / 1e6:.1f} MB",
                                 "MEMORY REGRESSION")]


def decode_regressions(current: list, compared_mapping: dict, threshold_pct: float | None) -> list[str]:
    """Decode points whose time per token (the median step) grew past the threshold. pytest-benchmark gates the
    whole call, which at long contexts is mostly the prefill (Mamba's compiled decode at 131072 on the H200: a
    3.6 s call, 0.15 s of it the 32 tokens' decode), so a threefold slower step moves it by 8 %."""
    if threshold_pct is None:
        return []
    decodes = [b for b in current if ((getattr(b, "extra_info", None) or {}).get("kind")) == "decode"]
    return _growths(decodes, compared_mapping, "decode_s_per_token", threshold_pct, lambda v: f"{v * 1e3:.2f} ms",
                    "DECODE REGRESSION")


def sessionstart(session: pytest.Session) -> None:
    """Drop refused baselines from what pytest-benchmark compares against (it loaded them at configure)."""
    benchmark_adapter.drop_compared(session.config, session.config.stash.get(refused_baselines_key, []))


def not_in_baselines(current: list, compared_mapping: dict) -> list[str]:
    """This run's benchmarks that no compared baseline holds: measured, saved, not compared. By full name or by
    name: pytest-benchmark's full name starts from pytest's rootdir, which a path that exists, given as the value
    of one of the suite's options, can move (pytest reads it as a test path before the suite's options are known:
    seen with --ssm-gate-report and --ssm-results-file of an earlier run in /tmp, rootdir /tmp), while the gate
    compares by name."""
    held = {name for mapping in compared_mapping.values() for name in mapping}
    names = {saved.get("name") for mapping in compared_mapping.values() for saved in mapping.values()} - {None}
    return [bench.fullname for bench in current
            if bench.fullname not in held and getattr(bench, "name", None) not in names]


def sessionfinish(session: pytest.Session) -> None:
    current, compared = benchmark_adapter.current_and_compared(session.config)
    # the gate holds its own points to their own allowances (gate.py), not these global percentages
    others = [b for b in current if b.fullname not in gate.gated(session.config)]
    found = (memory_regressions(others, compared, options.get(session.config, "memory_compare_fail"))
             + decode_regressions(others, compared, options.get(session.config, "decode_compare_fail"))) \
        if compared else []
    session.config.stash[memory_key] = found
    missing = not_in_baselines(current, compared) if compared else []
    session.config.stash[uncompared_key] = missing
    if current and missing and len(missing) == len(current):
        session.config.stash[refusals_key].append(
            f"none of this run's {len(current)} benchmarks is in the baseline ({', '.join(map(str, compared))}): "
            "it measured other models, contexts or backends, so nothing was compared. Record a baseline for them "
            "(README, 'Baselines and the regression gate').")
    if found and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if session.config.stash.get(refusals_key, []):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def summary_lines(config: pytest.Config) -> tuple[list[str], list[str], list[str]]:
    """(memory regressions, refusal messages, benchmarks the baseline does not hold) for the terminal summary."""
    return (config.stash.get(memory_key, []), config.stash.get(refusals_key, []),
            config.stash.get(uncompared_key, []))
