"""The regression gate (``pytest -m gate``, ``pytest_ssmbench/gate.py``): its selection, each figure's allowance,
the between-machine allowances, and -- end to end on the CPU's tiny models -- that it passes against the committed
CPU baseline on unchanged code and fails with an injected regression, naming the points it hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ssmbench import gate
from ssmbench.commands import gate_allowances

pytestmark = pytest.mark.selftest
ROOT = Path(__file__).resolve().parents[2]
CPU_BASELINE = ROOT / "baselines" / "cpu-gate"


@pytest.mark.quick
@pytest.mark.parametrize("expr, on", [("gate", True), ("gate and not slow", True), ("(gate)", True),
                                      ("not gate", False), ("quick", False), ("gated", False), ("", False)])
def test_gate_is_selected_by_the_word_gate(expr, on):
    assert gate.selected(expr) is on


@pytest.mark.quick
@pytest.mark.parametrize("gpu", [True, False])
def test_the_preset_runs_every_gate_point(gpu):
    p = gate.preset(gpu)
    for point in gate.GPU_POINTS if gpu else gate.CPU_POINTS:
        if point.kind == "throughput":
            assert point.at in p["throughput_prompts"] and point.batch in p["batch_sizes"]
        else:
            assert point.at in p["contexts"]
        backends = {eager if point.backend == "eager" else fast for eager, fast in gate.GATE_ARCHS.values()}
        assert backends <= set(p["backends"]), (point, p["backends"])
    assert set(p["archs"]) == set(gate.GATE_ARCHS)


def _info(kind="decode", step=0.005, spread=0.01, peak=1e9, cache=1000, params=10, tokens=32):
    return {"kind": kind, "decode_s_per_token": step, "rounds_spread": spread, "extra_peak_bytes": peak,
            "cache_bytes": cache, "params": params, "tokens_seen": tokens}


def _rows(now: dict, machines=None, gpu=True, median=0.2):
    baseline = {"p": {"extra_info": _info(), "stats": {"median": 0.2}}}
    rows = gate.compare([("p", now, median)], baseline, machines or {}, machines is None, gpu)
    return {r.figure: r for r in rows}


@pytest.mark.quick
def test_each_figure_has_its_own_allowance():
    # time: floor 2 % + twice the baseline's 1 % spread + the measured 3 % between machines = 7 %
    rows = _rows(_info(step=0.005 * 1.06), machines={"p": {"time": 0.03, "memory": 0.0}})
    assert rows["time"].allowance == pytest.approx(0.07) and not rows["time"].failed
    rows = _rows(_info(step=0.005 * 1.08), machines={"p": {"time": 0.03, "memory": 0.0}})
    assert rows["time"].failed and "machines 3.0%" in rows["time"].parts
    # memory: floor 1 % + machines; +20 % fails
    assert _rows(_info(peak=1.2e9), machines={"p": {"time": 0.0, "memory": 0.0}})["memory"].failed
    assert not _rows(_info(peak=1.005e9), machines={"p": {"time": 0.0, "memory": 0.0}})["memory"].failed
    # exact figures: any change fails, smaller too
    for key, value in (("cache", 1001), ("cache", 999), ("params", 11), ("tokens", 31)):
        rows = _rows(_info(**{key: value}))
        figure = {"cache": "cache_bytes", "params": "params", "tokens": "tokens_seen"}[key]
        assert rows[figure].failed, (key, value)
    # faster passes; unmeasured machines: the default, said in the parts
    rows = _rows(_info(step=0.004))
    assert not rows["time"].failed and f"machines {gate.DEFAULT_MACHINES['time']:.1%}" in rows["time"].parts


@pytest.mark.quick
def test_on_a_cpu_only_the_exact_figures_are_gated():
    rows = _rows(_info(step=0.5, peak=9e9), gpu=False)
    assert set(rows) == set(gate.EXACT) and not any(r.failed for r in rows.values())


@pytest.mark.quick
def test_a_prefill_is_timed_by_its_call():
    baseline = {"p": {"extra_info": _info(kind="prefill", step=None), "stats": {"median": 0.2}}}
    rows = {r.figure: r for r in gate.compare([("p", _info(kind="prefill", step=None), 0.3)], baseline, {}, True,
                                              True)}
    assert rows["time"].then == 0.2 and rows["time"].now == 0.3 and rows["time"].failed


@pytest.mark.quick
def test_machine_allowances_come_from_two_runs(tmp_path):
    def run(step, peak):
        return {"machine_info": {"gpu_name": "H", "model_set": "synthetic", "dtype_policy": "auto"},
                "benchmarks": [{"name": "p", "fullname": "t::p", "extra_info": _info(step=step, peak=peak),
                                "stats": {"median": 0.2, "mean": 0.2, "min": 0.2, "max": 0.2}}]}
    assert gate_allowances.allowances(run(0.005, 1e9), run(0.0052, 1e9)) == {
        "p": {"time": pytest.approx(gate.MACHINE_MARGIN * 0.04), "memory": 0.0}}
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "gate-allowances.json"
    a.write_text(json.dumps(run(0.005, 1e9)))
    b.write_text(json.dumps(run(0.0052, 1e9)))
    assert gate_allowances.main([str(a), str(b), "-o", str(out), "--measured", "two machines"]) == 0
    points, said = gate.machine_allowances(tmp_path)
    assert points["p"]["time"] == pytest.approx(0.06) and "two machines" in said
    with pytest.raises(SystemExit):  # nothing is overwritten
        gate_allowances.main([str(a), str(b), "-o", str(out), "--measured", "again"])
    out.write_text('{"points": {"p": {"time": -1}}}')
    with pytest.raises(pytest.UsageError, match="unreadable"):
        gate.machine_allowances(tmp_path)


def _gate(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gate", "-p", "no:cacheprovider", "-q", "--ssm-device", "cpu",
         f"--benchmark-storage=file://{CPU_BASELINE}", "--benchmark-compare=*/0001_gate",
         "--ssm-results-file", str(tmp_path / "points.json"), "--ssm-gate-report", str(tmp_path / "gate.md"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_cpu_gate_passes_unchanged_and_fails_an_injected_cache_naming_the_points(tmp_path):
    run = _gate(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "6 points" in run.stdout and "GATE REGRESSION" not in run.stdout, run.stdout[-3000:]
    run = _gate(tmp_path, "-p", "pytest_ssmbench.inject", "--ssm-inject", "cache")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    named = {line.split(":")[0].removeprefix("GATE REGRESSION ") for line in run.stdout.splitlines()
             if line.startswith("GATE REGRESSION")}
    assert named == {"test_latency_prefill[ctx64-tiny-mamba]", "test_latency_decode[ctx32-eager-tiny-mamba]",
                     "test_throughput[prompt32-bs4-eager-tiny-mamba]"}, run.stdout[-3000:]
    assert "| REGRESSION |" in (tmp_path / "gate.md").read_text()


def test_an_injected_run_cannot_become_a_baseline(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gate", "-p", "pytest_ssmbench.inject", "--ssm-inject",
                          "cache", "--benchmark-save=x", f"--benchmark-storage=file://{tmp_path}", "-q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 4 and "must not become a baseline" in run.stderr, run.stderr[-2000:]
    assert not list(tmp_path.rglob("*.json"))
