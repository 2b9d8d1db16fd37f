"""The regression gate (``pytest -m gate``: ``pytest_ssmbench/gate.py``, its judgement ``ssmbench/gatecheck.py``):
its selection, each figure's allowance, points the baseline holds and the run lacks, the between-machine
allowances, and -- end to end on the CPU's tiny models -- that it passes against the committed CPU baseline on
unchanged code and fails with an injected regression, naming the points it hit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ssmbench import gate
from ssmbench import gatecheck
from ssmbench.commands import gate_allowances

pytestmark = pytest.mark.selftest
ROOT = Path(__file__).resolve().parents[2]
CPU_BASELINE = ROOT / "baselines" / "cpu-gate"


@pytest.mark.quick
@pytest.mark.parametrize("expr, on", [("gate", True), ("gate and not slow", True), ("(gate)", True),
                                      ("gate or benchmark", True), ("not gate", False), ("not (gate)", False),
                                      ("not(gate)", False), ("not (quick or gate)", False),
                                      ("benchmark and not (gate)", False), ("quick", False), ("gated", False),
                                      ("", False), ("gate and", False)])
def test_gate_is_selected_as_pytest_reads_the_expression(expr, on):
    assert gatecheck.selected(expr) is on


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
            "cache_bytes": cache, "params": params, "tokens_seen": tokens, "tokens_seen_max": tokens}


def _rows(now: dict | None, machines=None, gpu=True, median=0.2, base=None):
    baseline = {"p": {"extra_info": base or _info(), "stats": {"median": 0.2}}}
    rows = gatecheck.compare([("p", now, median)] if now is not None else [], baseline, machines, gpu)
    return {r.figure: r for r in rows}


@pytest.mark.quick
def test_each_figure_has_its_own_allowance():
    measured = {"p": {"time": 0.03, "memory": 0.0}}
    # time: floor 2 % + twice the baseline's 1 % spread + the measured 3 % between machines = 7 %
    rows = _rows(_info(step=0.005 * 1.06), machines=measured)
    assert rows["time"].allowance == pytest.approx(0.07) and not rows["time"].failed
    rows = _rows(_info(step=0.005 * 1.08), machines=measured)
    assert rows["time"].failed and "machines 3.0%" in rows["time"].parts
    # memory: floor 1 % + machines; +20 % fails
    assert _rows(_info(peak=1.2e9), machines=measured)["memory"].failed
    assert not _rows(_info(peak=1.005e9), machines=measured)["memory"].failed
    # exact figures: any change fails, smaller too
    for key, value in (("cache", 1001), ("cache", 999), ("params", 11), ("tokens", 31)):
        rows = _rows(_info(**{key: value}))
        figure = {"cache": "cache_bytes", "params": "params", "tokens": "tokens_seen"}[key]
        assert rows[figure].failed, (key, value)
    # faster passes; no allowances file: the default, said so
    rows = _rows(_info(step=0.004))
    assert not rows["time"].failed and f"machines {gatecheck.DEFAULT_MACHINES['time']:.1%} (default)" in \
        rows["time"].parts


@pytest.mark.quick
def test_a_point_the_allowances_file_lacks_gets_the_default_and_says_so():
    row = _rows(_info(step=0.005 * 1.10), machines={"other": {"time": 0.0}})["time"]
    assert not row.failed and "default: not measured for this point" in row.parts


@pytest.mark.quick
def test_a_noisy_or_unreadable_baseline_spread_is_capped_not_a_blindfold():
    row = _rows(_info(step=0.005 * 1.6), base=_info(spread=0.36), machines={"p": {"time": 0.0}})["time"]
    assert row.failed and "capped" in row.parts  # 2 x 36 % would have allowed 74 %
    row = _rows(_info(step=0.05), base=_info(spread=float("nan")), machines={"p": {"time": 0.0}})["time"]
    assert row.failed


@pytest.mark.quick
def test_a_point_or_figure_the_run_lacks_fails():
    rows = _rows(None)  # out of memory, skipped, deselected: the baseline's point has no row of this run
    assert rows["point"].failed and "not measured by this run" in rows["point"].parts
    now = _info()
    del now["cache_bytes"]
    assert _rows(now)["cache_bytes"].failed


@pytest.mark.quick
def test_a_zero_byte_baseline_allows_noise_not_growth():
    assert not _rows(_info(peak=512), base=_info(peak=0))["memory"].failed
    assert _rows(_info(peak=64e6), base=_info(peak=0))["memory"].failed


@pytest.mark.quick
def test_on_a_cpu_only_the_exact_figures_are_gated():
    rows = _rows(_info(step=0.5, peak=9e9), gpu=False)
    assert set(rows) == set(gatecheck.EXACT) and not any(r.failed for r in rows.values())


@pytest.mark.quick
def test_a_prefill_is_timed_by_its_call():
    rows = _rows(_info(kind="prefill", step=None), base=_info(kind="prefill", step=None), median=0.3)
    assert rows["time"].then == 0.2 and rows["time"].now == 0.3 and rows["time"].failed


def _run(step, peak, **machine):
    return {"machine_info": {"gpu_name": "H", "model_set": "synthetic", "dtype_policy": "auto", **machine},
            "benchmarks": [{"name": "p", "fullname": "t::p", "extra_info": _info(step=step, peak=peak),
                            "stats": {"median": 0.2, "mean": 0.2, "min": 0.2, "max": 0.2}}]}


@pytest.mark.quick
def test_machine_allowances_come_from_two_runs(tmp_path):
    assert gate_allowances.allowances(_run(0.005, 1e9), _run(0.0052, 1e9)) == {
        "p": {"time": pytest.approx(gatecheck.MACHINE_MARGIN * 0.04), "memory": 0.0}}
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "gate-allowances.json"
    a.write_text(json.dumps(_run(0.005, 1e9)))
    b.write_text(json.dumps(_run(0.0052, 1e9)))
    assert gate_allowances.main([str(a), str(b), "-o", str(out), "--measured", "two machines"]) == 0
    points, said = gatecheck.machine_allowances(tmp_path)
    assert points["p"]["time"] == pytest.approx(0.06) and "two machines" in said
    with pytest.raises(SystemExit):  # nothing is overwritten
        gate_allowances.main([str(a), str(b), "-o", str(out), "--measured", "again"])
    out.write_text('{"points": {"p": {"time": -1}}}')
    with pytest.raises(ValueError, match="unreadable"):
        gatecheck.machine_allowances(tmp_path)
    b.write_text(json.dumps(_run(0.0052, 1e9, ssm_inject="slow-mixer")))  # an injected run is no measurement
    with pytest.raises(SystemExit):
        gate_allowances.main([str(a), str(b), "-o", str(tmp_path / "x.json"), "--measured", "x"])


def _gate(tmp_path, *args, storage=CPU_BASELINE, compare="*/0001_gate"):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gate", "-p", "no:cacheprovider", "-q", "--ssm-device", "cpu",
         f"--benchmark-storage=file://{storage}", *([f"--benchmark-compare={compare}"] if compare else []),
         "--ssm-results-file", str(tmp_path / "points.json"), "--ssm-gate-report", str(tmp_path / "gate.md"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def _named(stdout: str) -> set[str]:
    return {line.split(":")[0].removeprefix("GATE REGRESSION ") for line in stdout.splitlines()
            if line.startswith("GATE REGRESSION")}


MAMBA_POINTS = {"test_latency_prefill[ctx64-tiny-mamba]", "test_latency_decode[ctx32-eager-tiny-mamba]",
                "test_throughput[prompt32-bs4-eager-tiny-mamba]"}


def test_the_cpu_gate_passes_unchanged_and_fails_an_injected_cache_naming_the_points(tmp_path):
    run = _gate(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "6 points" in run.stdout and "GATE REGRESSION" not in run.stdout, run.stdout[-3000:]
    # an injection the CPU gate cannot see (work, not bytes) passes, and the run ends in pytest's result line
    run = _gate(tmp_path, "-p", "pytest_ssmbench.inject", "--ssm-inject", "slow-mixer")
    assert run.returncode == 0 and " passed" in run.stdout.splitlines()[-1], run.stdout[-3000:] + run.stderr[-2000:]
    run = _gate(tmp_path, "-p", "pytest_ssmbench.inject", "--ssm-inject", "cache")
    assert run.returncode == 1 and " passed" in run.stdout.splitlines()[-1], run.stdout[-3000:] + run.stderr[-2000:]
    assert _named(run.stdout) == MAMBA_POINTS, run.stdout[-3000:]
    assert "| REGRESSION |" in (tmp_path / "gate.md").read_text()


def test_a_gate_point_missing_from_the_run_fails(tmp_path):
    run = _gate(tmp_path, "--ssm-archs", "phi")  # the Mamba points of the baseline are not measured
    assert run.returncode == 1 and _named(run.stdout) == MAMBA_POINTS, run.stdout[-3000:]


def test_the_report_is_always_written_and_never_over_a_file_it_did_not_write(tmp_path):
    report = tmp_path / "gate.md"
    report.write_text(gatecheck.REPORT_HEADER + "\n| old | REGRESSION |\n")
    run = _gate(tmp_path, compare=None)  # nothing compared: the report says so, the old one is gone
    assert run.returncode == 0 and "nothing gated" in report.read_text() and "old" not in report.read_text()
    report.write_text("my notes\n")
    run = _gate(tmp_path)
    assert run.returncode == 4 and "not written by a gate report" in run.stderr and report.read_text() == "my notes\n"
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gate", "-p", "no:cacheprovider", "-q",
                          "--ssm-results-file", str(tmp_path / "same.json"), "--ssm-gate-report",
                          str(tmp_path / "same.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 4 and "also --ssm-results-file" in run.stderr


def test_the_gate_refuses_to_compare_with_timing_off_or_a_baseline_not_made_by_it(tmp_path):
    run = _gate(tmp_path, "--benchmark-disable")
    assert run.returncode == 4 and "--benchmark-disable" in run.stderr
    store = tmp_path / "store" / "m"
    store.mkdir(parents=True)
    data = json.loads(next(CPU_BASELINE.glob("*/0001_gate.json")).read_text())
    data["machine_info"]["ssmbench_gate"] = False
    (store / "0001_sweep.json").write_text(json.dumps(data))
    run = _gate(tmp_path, storage=tmp_path / "store", compare="*/0001_sweep")
    assert run.returncode == 4 and "not recorded by a gate run" in run.stdout, run.stdout[-2000:]


def test_an_injected_run_cannot_become_a_baseline(tmp_path):
    for save in ("--benchmark-save=x", f"--benchmark-json={tmp_path / 'b.json'}"):
        run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gate", "-p", "pytest_ssmbench.inject",
                              "--ssm-inject", "cache", save, f"--benchmark-storage=file://{tmp_path}", "-q"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 4 and "must not become a baseline" in run.stderr, run.stderr[-2000:]
    assert not list(tmp_path.rglob("*.json"))
