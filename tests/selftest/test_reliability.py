"""Faults lose nothing and explain themselves: NVML missing or unsupported, out of memory mid-sweep, an
interrupted sweep, missing and corrupt checkpoints, and run-to-run determinism. Fakes stand in for NVML and
for the GPU, so all of it runs on a CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types

import pytest
import torch

from pytest_ssmbench.sweep import measure_point
from ssmbench import devices, measure, plain, results
from ssmbench.loading import CheckpointError, load
from ssmbench.points import BenchSettings
from ssmbench.registry import ARCHS, pretrained_spec, resolve_model_set
from tests.fakes import FakeBenchmark
from tests.selftest.child import ROOT, clean_env, run_pytest

pytestmark = pytest.mark.selftest


# --- NVML -------------------------------------------------------------------------------------------------

class NVMLError(Exception):
    pass


def fake_pynvml(**behaviour) -> types.ModuleType:
    """A pynvml whose queries raise NVMLError (NOT_SUPPORTED, as on a DGX Spark) unless given a value."""
    mod = types.ModuleType("pynvml")

    def query(name):
        def call(*args):
            value = behaviour.get(name, NVMLError("Not Supported"))
            if isinstance(value, Exception):
                raise value
            return value
        return call

    mod.nvmlInit = query("init")
    mod.nvmlDeviceGetHandleByIndex = query("handle")
    mod.nvmlDeviceGetHandleByUUID = query("uuid_handle")
    mod.nvmlDeviceGetComputeRunningProcesses = query("processes")
    mod.nvmlDeviceGetTotalEnergyConsumption = query("energy")
    mod.nvmlSystemGetDriverVersion = query("driver")
    return mod


@pytest.mark.quick
def test_nvml_absent_reads_unavailable_not_zero(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: no nvidia-ml-py, or no driver
    nvml = measure.Nvml()
    assert nvml.handle is None and "ModuleNotFoundError" in nvml.reason
    assert nvml.process_memory() is None and nvml.energy_mj() is None and nvml.driver() is None
    clock = measure.StepClock(torch.device("cpu"), nvml)
    clock.start()
    clock(None, None)
    clock.finish()
    assert clock.energy_windows() is None
    assert measure.energy_per_unit([], 10) == (None, 0.0, "energy counter unavailable")


@pytest.mark.quick
def test_nvml_not_supported_queries_read_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init=None, handle=object(), driver="580.1"))
    nvml = measure.Nvml()
    assert nvml.handle is not None and nvml.driver() == "580.1"
    assert nvml.process_memory() is None, "NOT_SUPPORTED must read as unavailable"
    assert nvml.energy_mj() is None


@pytest.mark.quick
def test_energy_is_split_at_the_first_token(monkeypatch):
    """The prefill's joules never count in decode's joules per token, nor the decode's in the prefill's."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init=None, handle=object()))
    nvml = measure.Nvml()
    readings = iter([1_000_000, 1_900_000, 1_960_000])  # mJ: start, first token, end
    monkeypatch.setattr(nvml, "energy_mj", lambda: next(readings))
    clock = measure.StepClock(torch.device("cpu"), nvml)
    clock.start()
    for _ in range(4):  # the first token, then 3 decode steps
        clock(None, None)
    clock.finish()
    w = clock.energy_windows()
    assert (w.prefill_j, w.decode_j) == pytest.approx((900.0, 60.0))


@pytest.mark.quick
def test_energy_needs_a_long_enough_window():
    joules, window, why = measure.energy_per_unit([(5.0, 1.0), (5.0, 1.5)], 10, min_window_s=3.0)
    assert joules is None and window == 2.5 and why.startswith("window 2.50 s < 3 s")
    assert measure.energy_per_unit([(5.0, 1.0), (5.0, 2.5)], 10, min_window_s=3.0) == (1.0, 3.5, "")
    # many short windows add up, but each is quantised by the counter's 100 ms updates: no figure
    joules, window, why = measure.energy_per_unit([(0.5, 0.02)] * 200, 10)
    assert joules is None and window == pytest.approx(4.0) and why.startswith("shortest window 0.02 s < 1 s")


@pytest.mark.quick
def test_unified_memory_reads_host_available():
    assert measure.host_available_bytes() > 0
    assert measure.round_peak(torch.device("cpu")) is None  # no allocator figure: unavailable, not 0


# --- out of memory and interruption in a sweep ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_phi():
    spec = resolve_model_set("tiny", archs=["phi"])[0]
    return load(spec, torch.device("cpu"), torch.float32)


def _bench(tmp_path) -> BenchSettings:
    store = results.ResultStore(tmp_path / "points.json", {"device": "fake"})
    return BenchSettings([8, 16, 32], [1], ["eager"], 2, 1, devices.profile_for("NVIDIA H200"), "-", store,
                         measure.Nvml())


# not quick: the harness's real calls (the selftest tier runs it)
def test_out_of_memory_point_is_recorded_and_the_sweep_goes_on(tiny_phi, tmp_path, monkeypatch):
    bench = _bench(tmp_path)
    real_generate = tiny_phi.model.generate

    def generate(input_ids, **kwargs):
        if input_ids.shape[1] >= 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 14.00 GiB")
        return real_generate(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(tiny_phi.model, "generate", generate)
    outcomes = []
    for context in bench.contexts:
        ids = torch.randint(3, 500, (1, context))
        try:
            measure_point(FakeBenchmark(), bench, tiny_phi, "prefill", ids, 1)
            outcomes.append("ok")
        except pytest.skip.Exception as skip:
            outcomes.append(str(skip))
    assert outcomes[0] == "ok" and all("out of memory at prefill context" in o for o in outcomes[1:])
    saved = json.loads((tmp_path / "points.json").read_text())["points"]
    assert [p["status"] for p in saved] == ["ok", "oom", "oom"]
    assert any("16 | out of memory" in line for line in results.summary_lines(bench.store))


# not quick: the harness's real calls (the selftest tier runs it)
def test_throughput_stops_at_the_first_batch_out_of_memory_and_says_so(tiny_phi, tmp_path, monkeypatch):
    """Batch 1 fits, batch 4 runs out of memory (recorded), batch 16 is not attempted; the summary gives the
    largest batch that fit, and a prompt that never ran out of memory goes on to the largest batch."""
    from pytest_ssmbench.sweep import skip_past_out_of_memory

    bench = _bench(tmp_path)
    real_generate = tiny_phi.model.generate
    calls = []

    def generate(input_ids, **kwargs):
        calls.append(tuple(input_ids.shape))
        if input_ids.shape[0] >= 4 and input_ids.shape[1] == 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 56.00 GiB")
        return real_generate(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(tiny_phi.model, "generate", generate)
    outcomes = {}
    for prompt in (16, 8):
        for batch in (1, 4, 16):
            try:
                skip_past_out_of_memory(bench, tiny_phi.name, "eager", prompt, batch)
                measure_point(FakeBenchmark(), bench, tiny_phi, "throughput", torch.randint(3, 500, (batch, prompt)), 3)
                outcomes[prompt, batch] = "ok"
            except pytest.skip.Exception as skip:
                outcomes[prompt, batch] = str(skip)
    assert outcomes[16, 1] == "ok" and "out of memory at throughput" in outcomes[16, 4]
    assert outcomes[16, 16] == ("tiny-phi (eager, prompt 16): out of memory at batch 4 already (recorded); batch 16 "
                                "is not attempted")
    assert (16, 16) not in calls and (16, 8) in calls and all(outcomes[8, n] == "ok" for n in (1, 4, 16))
    lines = results.summary_lines(bench.store)
    assert any("prompt 16, 3 new tokens: largest batch that fits: 1 (out of memory at 4)" in line for line in lines)
    assert any("prompt 8, 3 new tokens: largest batch that fits: 16 (no out of memory up to 16)" in line
               for line in lines)


# not quick: the harness's real calls (the selftest tier runs it)
def test_interrupted_sweep_keeps_the_points_measured_before(tiny_phi, tmp_path, monkeypatch):
    bench = _bench(tmp_path)
    measure_point(FakeBenchmark(), bench, tiny_phi, "prefill", torch.randint(3, 500, (1, 8)), 1)

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_phi.model, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        measure_point(FakeBenchmark(), bench, tiny_phi, "prefill", torch.randint(3, 500, (1, 16)), 1)
    saved = json.loads((tmp_path / "points.json").read_text())["points"]
    assert [(p["context"], p["status"]) for p in saved] == [(8, "ok")]


# --- checkpoints ------------------------------------------------------------------------------------------

def _writable_copy(source, target) -> None:
    """A copy the test may damage, also from a read-only checkout (copytree keeps the read-only modes)."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.quick
def test_missing_local_checkpoint_names_the_path(tmp_path):
    spec = pretrained_spec(ARCHS["mamba"], {"mamba": str(tmp_path / "nowhere")})
    assert spec.unavailable and str(tmp_path / "nowhere" / "config.json") in spec.unavailable


@pytest.mark.quick
def test_hub_id_missing_from_offline_cache_names_id_and_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    spec = pretrained_spec(ARCHS["phi"], {})
    assert "microsoft/phi-2" in spec.unavailable and "SSMBENCH_PATH_PHI" in spec.unavailable


@pytest.mark.quick
@pytest.mark.parametrize("damage", ["truncated weights", "bad config"])
def test_corrupt_checkpoint_fails_loudly_with_its_path(tmp_path, damage):
    target = tmp_path / "ckpt"
    _writable_copy(ARCHS["mamba"].tiny_path, target)
    if damage == "truncated weights":
        data = (target / "model.safetensors").read_bytes()
        (target / "model.safetensors").write_bytes(data[: len(data) // 3])
    else:
        (target / "config.json").write_text("{ not json")
    spec = pretrained_spec(ARCHS["mamba"], {"mamba": str(target)})
    with pytest.raises(CheckpointError, match=f"cannot load the checkpoint at {target}"):
        load(spec, torch.device("cpu"), torch.float32)


def test_a_given_path_without_a_checkpoint_is_a_usage_error_in_every_model_set(tmp_path):
    """Under --ssm-models auto a typo'd path used to fall back to the synthetic model silently: a user would
    benchmark random weights believing they were theirs."""
    for model_set in ("auto", "pretrained"):
        run = run_pytest("-m", "quick", "--ssm-models", model_set, f"--ssm-model-path=mamba={tmp_path}/absent",
                         "-k", "test_greedy_shape_and_prefix")
        assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
        assert f"mamba={tmp_path}/absent" in run.stderr and f"no checkpoint at {tmp_path}/absent" in run.stderr


def test_a_hub_id_missing_from_the_cache_skips_that_model_with_where_it_looked(tmp_path):
    run = run_pytest("-m", "quick", "--ssm-models", "pretrained", "-rs", "-k", "test_greedy_shape_and_prefix",
                     env_extra={"HF_HUB_CACHE": str(tmp_path)})
    assert "microsoft/phi-2 is not in the local Hugging Face cache" in run.stdout, run.stdout[-2000:]
    assert "state-spaces/mamba-2.8b-hf is not in the local Hugging Face cache" in run.stdout
    # asked for explicitly and none there: a CI gate must not pass on nothing
    assert run.returncode == 5 and "nothing was checked (exit code 5)" in run.stdout, run.stdout[-2000:]


# --- determinism ------------------------------------------------------------------------------------------

GENERATE_SCRIPT = """
import torch
from ssmbench.registry import resolve_model_set
from ssmbench.loading import load
from ssmbench.inputs import PROMPTS
for spec in (s for s in resolve_model_set("tiny") if not s.arch.unsupported()):
    lm = load(spec, torch.device("cpu"), torch.float32)
    print(spec.name, lm.generate(PROMPTS, max_new_tokens=12, min_new_tokens=12).tolist())
    torch.manual_seed(0)
    print(spec.name, lm.generate(PROMPTS[0], do_sample=True, max_new_tokens=12, min_new_tokens=12).tolist())
"""


def test_two_runs_generate_identical_tokens():
    outputs = [subprocess.run([sys.executable, "-c", GENERATE_SCRIPT], cwd=ROOT, env=clean_env(), capture_output=True,
                              text=True, timeout=300, check=True).stdout for _ in range(2)]
    runnable = [a for a in ARCHS.values() if not a.unsupported()]
    assert outputs[0].count("tiny-") == 2 * len(runnable) and outputs[0] == outputs[1]


@pytest.mark.quick
def test_baseline_save_is_atomic(tmp_path, monkeypatch):
    """pytest-benchmark's save goes through the suite's atomic writer: a crash mid-write leaves no file."""
    import os

    from pytest_benchmark.storage.file import FileStorage

    from pytest_ssmbench import benchmark_adapter

    storage = FileStorage(str(tmp_path), logger=types.SimpleNamespace(info=lambda *a: None), default_machine_id="m")
    monkeypatch.setattr(FileStorage, "save", benchmark_adapter._atomic_save)
    storage.save({"benchmarks": [], "machine_info": {}}, "ok")
    assert json.loads((tmp_path / "m" / "0001_ok.json").read_text())["benchmarks"] == []

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        storage.save({"benchmarks": [], "machine_info": {}}, "crashed")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["0001_ok.json"]


# --- calibration ------------------------------------------------------------------------------------------

class FakeClock:
    """Time that moves only when the model computes (``step_s`` a forward) or a test says so (``advance``): the
    suite's clocks and plain generate()'s read it, so a calibration self-test sees the same figures however
    loaded the host is (a contended 2-core CI host once put real tiny calls 270 % apart)."""

    def __init__(self, step_s: float = 0.001):
        self.now, self.step_s = 1000.0, step_s

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(tiny_phi, monkeypatch):
    from ssmbench import bench, calibrate, plain, points

    clock = FakeClock()
    fake_time = types.SimpleNamespace(perf_counter=clock.perf_counter, sleep=clock.advance, time=clock.perf_counter)
    for module in (measure, calibrate, plain, points, bench):
        monkeypatch.setattr(module, "time", fake_time)
    hook = tiny_phi.model.register_forward_pre_hook(lambda *_: clock.advance(clock.step_s))
    yield clock
    hook.remove()


@pytest.mark.quick
def test_calibration_catches_a_harness_that_inflates_a_figure(tiny_phi, fake_clock, tmp_path, monkeypatch):
    import dataclasses

    from ssmbench import points as points_module

    b = dataclasses.replace(_bench(tmp_path), rounds=5, calibrate_contexts=(16,), calibrate_tolerance=0.05)
    ids = torch.randint(3, 500, (1, 16))
    honest = measure_point(FakeBenchmark(), b, tiny_phi, "prefill", ids, 1)
    checks = honest.calibration.checks
    assert [(c["figure"], c["of"]) for c in checks] == [("ttft_s", "harness"), ("ttft_s", "point")]
    assert checks[0]["pairs"] >= 3 and checks[0]["low"] <= checks[0]["high"]  # paired, with its interval
    assert not any(c["fails"] for c in checks), checks  # the harness's call and the point's rounds both agree
    real_finish = points_module.finish_point

    def inflated(point, *args):
        point = real_finish(point, *args)
        point.timing.ttft_s *= 1.5  # figures derived wrongly from the rounds
        return point

    monkeypatch.setattr(points_module, "finish_point", inflated)
    point = measure_point(FakeBenchmark(), b, tiny_phi, "prefill", ids, 1)
    assert len(point.calibration_failures) == 1
    assert "tiny-phi prefill @ 16 (eager): ttft_s" in point.calibration_failures[0]
    assert "in the point's rounds" in point.calibration_failures[0]
    assert any("over tolerance" in line and "1 over" in line for line in results.summary_lines(b.store))


@pytest.mark.quick
def test_calibration_catches_a_call_that_times_more_than_generate(tiny_phi, fake_clock, tmp_path, monkeypatch):
    """The harness's own call, alternated with plain calls, must agree with them: a clock that counts more
    than the call (here: time passing inside the timed region) fails calibration whatever the rounds said."""
    import dataclasses

    from ssmbench import measure

    b = dataclasses.replace(_bench(tmp_path), rounds=3, calibrate_contexts=(16,), calibrate_tolerance=0.05)
    ids = torch.randint(3, 500, (1, 16))
    real_start = measure.StepClock.start

    def slow_start(self):
        real_start(self)
        fake_clock.advance(0.0005)  # inside the timed region: half a forward's time more than the call

    monkeypatch.setattr(measure.StepClock, "start", slow_start)
    point = measure_point(FakeBenchmark(), b, tiny_phi, "prefill", ids, 1)
    harness = [c for c in point.calibration.checks if c["of"] == "harness"]
    assert harness and harness[0]["fails"], point.calibration.checks
    assert any("by the suite's call" in f for f in point.calibration_failures)


@pytest.mark.quick
def test_throughput_calibration_pairs_the_whole_call_and_its_decode_with_plain_generate(tiny_phi, fake_clock,
                                                                                        tmp_path, monkeypatch):
    """A throughput point at a calibrated batch: its whole call and the call after its first token, each paired
    with a plain generate() of the same batch (a streamer's clock), and the point's own figures against them. A
    clock that counts more than each step fails the decode; a batch not asked for is not calibrated."""
    import dataclasses

    from ssmbench import measure

    b = dataclasses.replace(_bench(tmp_path), rounds=3, calibrate_batches=(2,), calibrate_tolerance=0.05)
    ids = torch.randint(3, 500, (2, 16))
    honest = measure_point(FakeBenchmark(), b, tiny_phi, "throughput", ids, 4)
    figures = [(c["figure"], c["of"]) for c in honest.calibration.checks]
    assert figures == [("call_s", "harness"), ("call_s", "point"), ("decode_s", "harness"), ("decode_s", "point")]
    assert not any(c["fails"] for c in honest.calibration.checks), honest.calibration.checks
    assert measure_point(FakeBenchmark(), b, tiny_phi, "throughput", ids[:1], 4).calibration is None
    real_step = measure.StepClock.__call__

    def slow_step(self, input_ids, scores):
        fake_clock.advance(fake_clock.step_s / 2)  # each step's mark half a forward late
        return real_step(self, input_ids, scores)

    monkeypatch.setattr(measure.StepClock, "__call__", slow_step)
    point = measure_point(FakeBenchmark(), b, tiny_phi, "throughput", ids, 4)
    failed = {c["figure"] for c in point.calibration.checks if c["of"] == "harness" and c["fails"]}
    assert "decode_s" in failed, point.calibration.checks
    assert any("throughput @ 16 batch 2 (eager): decode_s" in f for f in point.calibration_failures)


@pytest.mark.quick
def test_a_throughput_calls_decode_is_the_call_after_its_own_first_token(monkeypatch):
    """Both sides of the decode-only figure leave the prefill out: the suite's (the last call less its own first
    token) and the plain call's (its end less the streamer's first new token, not the prompt's hand-out)."""

    clock = FakeClock()
    time = types.SimpleNamespace(perf_counter=clock.perf_counter, sleep=clock.advance)
    monkeypatch.setattr(plain, "time", time)
    from ssmbench.points import _after_first
    from ssmbench.runs import Runs

    runs = Runs()
    runs.calls, runs.intervals = [2.0, 1.0], [[0.5, 0.1], [0.3, 0.1, 0.2]]
    assert _after_first(runs) == pytest.approx(0.7)

    class SlowPrefill:  # generate(): the prompt handed out, a 0.2 s prefill, then 4 tokens 10 ms apart
        name, device = "fake", torch.device("cpu")

        def __init__(self, tokens):
            self.tokens = tokens

        def generate(self, ids, streamer, **kwargs):
            streamer.put(ids)
            time.sleep(0.2)
            for _ in range(self.tokens):
                streamer.put(ids[:, :1])
                time.sleep(0.01)

    call, after = plain.timed(SlowPrefill(4), torch.zeros(2, 3), 4, "eager")
    # the call: 0.2 s of prefill and 10 ms after each of the 4 tokens; after the first new token: those 40 ms
    assert call == pytest.approx(0.24) and after == pytest.approx(0.04), (call, after)
    with pytest.raises(RuntimeError, match="expected 5"):
        plain.timed(SlowPrefill(3), torch.zeros(2, 3), 4, "eager")


@pytest.mark.quick
def test_throughput_calibration_holds_each_figure_to_its_plain_twin_either_way(monkeypatch):
    """The whole call against the plain call, the decode against the plain decode, exactly those (a fake
    clock), and a band symmetric in ratio: a suite figure at 40 % of plain (a harness that overstates tokens per
    second 2.5-fold) fails at the CPU's 100 % as a 2.5-fold one does; -100 % could never be reached."""
    import types

    from ssmbench import calibrate
    from ssmbench.point import Point

    monkeypatch.setattr(plain, "peak", lambda *args: None)
    monkeypatch.setattr(plain, "timed", lambda lm, ids, n, backend: (1.0, 0.6))
    point = Point("m", "throughput", 2048, 8, 128)
    point.timing.tokens_per_s, point.timing.decode_tokens_per_s = 8 * 128 / 1.0, 8 * 127 / 0.6
    point.timing.round_values_s, point.timing.decode_round_values_s = [1.0] * 3, [0.6] * 3
    lm = types.SimpleNamespace(device=torch.device("cpu"))

    def checks(call_s, after_s, tolerance):
        found = calibrate.calibrate_point(point, lm, None, "eager", lambda: call_s, tolerance, 0.0, lambda: after_s)
        return {(c.figure, c.of): c for c in found}

    agree = checks(1.0, 0.6, 0.05)
    assert agree["call_s", "point"].suite == pytest.approx(1.0)
    assert agree["decode_s", "point"].suite == pytest.approx(0.6)
    assert all(c.plain == pytest.approx(1.0 if f == "call_s" else 0.6) for (f, _), c in agree.items())
    assert not any(c.fails(0.05) or c.unresolved(0.05) for c in agree.values())
    slow_decode = checks(1.0, 0.9, 0.05)
    assert slow_decode["decode_s", "harness"].fails(0.05) and not slow_decode["call_s", "harness"].fails(0.05)
    for factor in (0.4, 2.5):  # 40 % of plain, or 2.5 times it: both beyond a 100 % band
        c = checks(factor, 0.6 * factor, 1.0)["call_s", "harness"]
        assert c.fails(1.0), (factor, c)
    assert not checks(0.6, 0.36, 1.0)["call_s", "harness"].fails(1.0)  # 60 %: inside -50 .. +100 %


@pytest.mark.quick
def test_a_generate_that_raises_while_streaming_raises_in_the_test_instead_of_hanging(tiny_phi, monkeypatch):
    import threading

    def broken(**kwargs):
        raise ValueError("tokenizer files missing")

    monkeypatch.setattr(tiny_phi.model, "generate", broken)
    outcome = {}

    def consume():
        try:
            tiny_phi.stream("Hello", timeout_s=30, max_new_tokens=4)
        except Exception as exc:
            outcome["error"] = exc

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(20)
    assert not consumer.is_alive(), "the streaming consumer still waits on a generate() that raised"
    assert isinstance(outcome.get("error"), ValueError) and "tokenizer files missing" in str(outcome["error"])


# not quick: the harness's real calls (the selftest tier runs it)
def test_out_of_memory_on_a_cpu_is_recorded_as_such(tiny_phi, tmp_path, monkeypatch):
    bench = _bench(tmp_path)

    def generate(input_ids, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 68719476736 bytes")

    monkeypatch.setattr(tiny_phi.model, "generate", generate)
    with pytest.raises(pytest.skip.Exception, match="out of memory at prefill context 8"):
        measure_point(FakeBenchmark(), bench, tiny_phi, "prefill", torch.randint(3, 500, (1, 8)), 1)
    assert [p.status for p in bench.store.points] == ["oom"]
    monkeypatch.setattr(tiny_phi.model, "generate", lambda **kw: (_ for _ in ()).throw(RuntimeError("a bug")))
    from ssmbench import points as points_module

    released = []
    real_release = points_module.release_backend_state
    monkeypatch.setattr(points_module, "release_backend_state", lambda *a: released.append(a) or real_release(*a))
    with pytest.raises(RuntimeError, match="a bug"):  # any other RuntimeError is a bug, and propagates ...
        measure_point(FakeBenchmark(), bench, tiny_phi, "prefill", torch.randint(3, 500, (1, 8)), 1)
    assert len(released) == 2  # ... after the backend's state is released (once before the point, once after)


@pytest.mark.quick
def test_out_of_memory_is_recognised_in_every_form_a_gpu_raises_it():
    """A CUDA launch or graph instantiation that found no memory, cuBLAS's workspace, and an allocator error
    re-raised under another (torch.compile, transformers) are out of memory too: else the point is not recorded
    and the next, larger batch is tried. Anything else is a bug and is not."""
    from ssmbench.points import is_out_of_memory

    assert is_out_of_memory(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be reported later"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        except torch.cuda.OutOfMemoryError as inner:
            raise ValueError("backend compiler failed") from inner
    except ValueError as outer:
        assert is_out_of_memory(outer)
    try:
        try:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        except RuntimeError:
            raise KeyError("during handling")  # noqa: B904 -- chained implicitly, as __context__
    except KeyError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an error a device raises


@pytest.mark.quick
def test_results_files_respect_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        results.atomic_write_text(tmp_path / "points.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "points.json").stat().st_mode) == 0o644


@pytest.mark.quick
def test_calibration_tolerance_of_a_points_figure_allows_for_the_measurements_own_spread():
    from ssmbench.calibrate import Check

    assert Check("extra_peak_bytes", 2.0, 1.0).fails(0.05)  # memory: the tolerance alone
    assert not Check("ttft_s", 1.5, 1.0, noise=0.2, of="point").fails(1.0)  # within the tolerance
    assert not Check("ttft_s", 3.0, 1.0, noise=0.9, of="point").fails(1.0)  # over it, but within 3x the spread
    assert Check("ttft_s", 3.0, 1.0, noise=0.5, of="point").fails(1.0)  # over both


@pytest.mark.quick
def test_paired_calibration_fails_only_when_the_whole_interval_is_beyond_the_tolerance():
    from ssmbench.calibrate import paired_check

    def check(ratios):
        return paired_check("ttft_s", [r * 1.0 for r in ratios], [1.0] * len(ratios))

    biased = check([1.09, 1.10, 1.11, 1.10, 1.12, 1.08, 1.10, 1.09])  # a 10 % harness, quiet host
    assert biased.fails(0.05) and not biased.unresolved(0.05)
    noisy = check([0.96, 1.25, 1.02, 1.15, 0.90, 1.10, 1.07, 1.20])  # median +8.5 %, host noise of 35 %
    assert not noisy.fails(0.05) and noisy.unresolved(0.05)
    agrees = check([0.99, 1.01, 1.02, 0.98, 1.00, 1.03, 0.97, 1.01])
    assert not agrees.fails(0.05) and not agrees.unresolved(0.05)
    faster = check([0.80, 0.82, 0.79, 0.81, 0.83, 0.80])  # a harness that times too little fails as well
    assert faster.fails(0.05)


@pytest.mark.quick
def test_median_interval_is_the_order_statistics_one():
    from ssmbench.calibrate import median_interval, resolved

    assert median_interval(list(range(1, 11))) == (2, 9, pytest.approx(1 - 2 * 11 / 1024))
    low, high, cover = median_interval([3.0, 1.0, 2.0])  # fewer than 6: the range, and what it covers
    assert (low, high, cover) == (1.0, 3.0, 0.75)
    assert resolved([1.0, 1.01, 0.99, 1.0, 1.02, 0.98], [1.0] * 6, 0.05)
    assert not resolved([1.0, 1.01, 0.99], [1.0] * 3, 0.05)  # no 95 % interval from 3 pairs
    assert not resolved([1.0, 1.2, 0.8, 1.1, 0.9, 1.0], [1.0] * 6, 0.05)  # too noisy to tell 5 %
    assert resolved([1.2, 1.21, 1.19, 1.2, 1.22, 1.18], [1.0] * 6, 0.05)  # decided: wholly beyond


@pytest.mark.quick
def test_calibration_keeps_alternating_while_undecided_for_as_long_as_it_is_given(monkeypatch):
    """A figure the host's noise leaves undecided: 6 pairs with no time to spare (the minimum for a 95 %
    interval), up to MAX_PAIRS with time (``--ssm-calibrate-max-time``): a long point can be decided by allowing it."""
    import itertools
    import types

    from ssmbench import calibrate
    from ssmbench.point import Point

    noisy = itertools.cycle([0.9, 1.1])  # suite/plain: +-10 %, around 0: never wholly within 5 % or beyond it
    monkeypatch.setattr(plain, "call", lambda *args: next(noisy))
    lm = types.SimpleNamespace(device=torch.device("cpu"))
    point = Point("m", "prefill", 16, 1, 1)
    point.timing.ttft_s = 1.0
    for max_seconds, pairs in ((0.0, calibrate.CALLS), (60.0, calibrate.MAX_PAIRS)):
        checks = calibrate.calibrate_point(point, lm, None, "eager", lambda: 1.0, 0.05, max_seconds)
        paired = next(c for c in checks if c.of == "harness")
        assert paired.pairs == pairs and paired.unresolved(0.05), paired


# not quick: the harness's real calls (the selftest tier runs it)
def test_plain_decode_steps_are_the_times_between_the_tokens_generate_hands_out(tiny_phi, monkeypatch):
    """The plain per-token figure of a compiled decode: a streamer's clock around plain generate(), one interval
    per token after the first, each the step that made it (a model that takes 30 ms a forward shows 30 ms)."""
    import time


    ids = torch.randint(3, 500, (1, 8))
    steps = plain.steps(tiny_phi, ids, 6, "eager")
    assert len(steps) == 5 and all(s > 0 for s in steps)
    real_forward = tiny_phi.model.forward

    def slow_forward(*args, **kwargs):
        time.sleep(0.03)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(tiny_phi.model, "forward", slow_forward)
    steps = plain.steps(tiny_phi, ids, 4, "eager")
    assert len(steps) == 3 and min(steps) >= 0.03, steps


@pytest.mark.quick
def test_compiled_decode_is_calibrated_by_the_streamers_steps_not_by_two_prefills(monkeypatch):
    """A compiled (plain generate()) decode point pairs the harness's median step with the median of a plain
    call's streamed steps of the same length: no call of 2 and 1 + M tokens, whose prefills' noise left phi-2's
    decode at 131072 undecided on the H200. A harness 10 % slow fails; an honest one agrees in 6 pairs."""
    import types

    from ssmbench import backends, calibrate
    from ssmbench.point import Point

    calls = []
    monkeypatch.setattr(backends.BACKENDS["compiled"], "streams", lambda lm: True)  # generate()'s static cache
    monkeypatch.setattr(plain, "call", lambda *args: pytest.fail("a two-call difference was used"))
    monkeypatch.setattr(plain, "steps", lambda lm, ids, n, backend: calls.append(n) or [0.01] * (n - 1))
    lm = types.SimpleNamespace(device=torch.device("cpu"))
    point = Point("m", "decode", 131072, 1, 33)
    point.timing.decode_s_per_token, point.timing.round_values_s = 0.01, [0.01, 0.01, 0.01]
    for harness_s, fails in ((0.011, True), (0.0101, False)):
        checks = calibrate.calibrate_point(point, lm, None, "compiled", lambda s=harness_s: s, 0.05, 60.0)
        paired = next(c for c in checks if c.of == "harness")
        assert paired.figure == "decode_s_per_token" and paired.pairs == calibrate.CALLS
        assert paired.fails(0.05) is fails and not paired.unresolved(0.05)
    assert set(calls) == {33}  # the point's own token count


def _damaged_copy(tmp_path, damage: str):
    from safetensors.torch import load_file, save_file

    target = tmp_path / "ckpt"
    _writable_copy(ARCHS["phi" if damage == "another architecture" else "mamba"].tiny_path, target)
    if damage == "a layer's weights missing":
        weights = load_file(target / "model.safetensors")
        save_file({k: v for k, v in weights.items() if ".layers.1." not in k}, target / "model.safetensors",
                  metadata={"format": "pt"})
    elif damage == "more layers than weights":
        config = json.loads((target / "config.json").read_text())
        config["num_hidden_layers"] += 1
        (target / "config.json").write_text(json.dumps(config))
    elif damage == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (target / name).unlink()
    return target


@pytest.mark.quick
@pytest.mark.parametrize("damage, message", [
    ("another architecture", "config.json says model_type 'phi'; mamba is 'mamba'"),
    ("a layer's weights missing", "weights do not match the config: "),
    ("more layers than weights", "weights do not match the config: "),
    ("no tokenizer", "no tokenizer files"),
])
def test_a_checkpoint_that_is_not_what_it_was_given_for_is_a_checkpoint_error(tmp_path, damage, message):
    """Each loaded before, and passed tests as pretrained-mamba: another architecture's checkpoint, weights
    filled with random values for the gaps, an empty tokenizer."""
    target = _damaged_copy(tmp_path, damage)
    spec = pretrained_spec(ARCHS["mamba"], {"mamba": str(target)})
    with pytest.raises(CheckpointError, match=f"cannot load the checkpoint at {target}") as err:
        load(spec, torch.device("cpu"), torch.float32)
    assert message in str(err.value), str(err.value)


@pytest.mark.quick
def test_ctrl_c_while_saving_a_baseline_exits_2_without_a_half_written_file(tmp_path, monkeypatch):
    from pytest_benchmark.storage.file import FileStorage

    from pytest_ssmbench import benchmark_adapter

    def interrupted(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(FileStorage, "save", benchmark_adapter._atomic_save)
    monkeypatch.setattr(results, "atomic_write_text", interrupted)
    storage = FileStorage(str(tmp_path), logger=types.SimpleNamespace(info=lambda *a: None), default_machine_id="m")
    with pytest.raises(pytest.exit.Exception) as stop:
        storage.save({"benchmarks": []}, "ok")
    assert stop.value.returncode == pytest.ExitCode.INTERRUPTED and "interrupted while saving" in str(stop.value)
    assert not list(tmp_path.rglob("*.json")), "a baseline file was left behind"


@pytest.mark.quick
def test_nvml_reads_the_gpu_a_uuid_mask_names_not_gpu_0(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init=None, handle="physical GPU 0", uuid_handle="GPU-b"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2a1c3e-0000-1111-2222-333344445555")
    assert measure.Nvml().handle == "GPU-b"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert measure.Nvml().handle == "physical GPU 0"  # an index: the index handle (the fake returns one value)


@pytest.mark.quick
@pytest.mark.parametrize("call_s, calls", [(0.0, 10), (0.3, 4), (2.0, 1)])
def test_a_point_warms_up_for_a_second_of_calls_one_to_ten(monkeypatch, call_s, calls):
    """One warm-up call left short calls' rounds slow (H200: first prefills at 512 tokens 10-18 % over plain
    generate(); a CI host's tiny prefills up to 163 %): calls until a second has passed, at least 1, at most 10."""
    from ssmbench import points as points_module

    clock = [0.0]
    monkeypatch.setattr(points_module.time, "perf_counter", lambda: clock[0])
    made = []

    def call():
        made.append(1)
        clock[0] += call_s

    assert points_module.warm_up(call, lambda: None) == calls == len(made)


@pytest.mark.quick
def test_decode_time_of_a_batch_is_each_calls_own_time_after_its_own_first_token():
    """Throughput's decode figure: per call, the call minus its own first token, then the median. The median call
    minus the median first token can take them from different rounds: here 15.0 - 14.2 = 0.8 s, though every
    round but one decoded in 1.0 s (at batch 256 x 2048 the prefill is 14 of a call's 15 s)."""
    from ssmbench.runs import Runs

    runs = Runs(intervals=[[14.0, 0.1], [14.4, 0.1], [14.2, 0.1]], calls=[15.0, 15.4, 14.7])
    assert runs.decode_s == pytest.approx(1.0)
    assert runs.total_s - runs.ttft_s == pytest.approx(0.8)  # what the figure was before


# not quick: the harness's real calls (the selftest tier runs it)
def test_the_first_decode_steps_extra_cost_is_in_tpot_not_in_the_steady_step(tiny_phi, tmp_path, monkeypatch):
    """decode_s_per_token is the median step (the steady step the roofline and scaling speak of); tpot_s is
    the mean, what (call - first token) / (tokens - 1) gives a user: a slow first decode step moves only it."""
    def intervals(self):
        return [0.05, 0.5] + [0.01] * 8  # first token, one slow decode step, eight steady ones

    monkeypatch.setattr(measure.StepClock, "intervals_s", intervals)
    point = measure_point(FakeBenchmark(), _bench(tmp_path), tiny_phi, "decode", torch.randint(3, 500, (1, 8)), 10)
    assert point.timing.decode_s_per_token == pytest.approx(0.01)
    assert point.timing.tpot_s == pytest.approx((0.5 + 8 * 0.01) / 9)


# not quick: the harness's real calls (the selftest tier runs it)
def test_a_prefill_points_time_to_first_token_is_the_whole_generate_call(tiny_phi, tmp_path, monkeypatch):
    """generate(max_new_tokens=1) as a wall clock sees it: work generate() does after the token (here a sleep)
    is in the prefill figure, as in a user's measurement, not cut off at the logits processor."""
    import time

    real = tiny_phi.model.generate

    def slow_tail(*args, **kwargs):
        out = real(*args, **kwargs)
        time.sleep(0.1)
        return out

    monkeypatch.setattr(tiny_phi.model, "generate", slow_tail)
    point = measure_point(FakeBenchmark(), _bench(tmp_path), tiny_phi, "prefill", torch.randint(3, 500, (1, 8)), 1)
    assert point.timing.ttft_s >= 0.1 and point.timing.median_s >= 0.1
    assert all(v >= 0.1 for v in point.timing.round_values_s)


# not quick: the harness's real calls (the selftest tier runs it)
@pytest.mark.parametrize("new_tokens", [1, 4])
def test_no_energy_read_inside_a_prefill_call(tiny_phi, tmp_path, monkeypatch, new_tokens):
    """Each NVML energy read synchronizes and queries the driver: a read at the first token sat inside the whole
    call that a prefill point reports (on the H200 3-7 ms over plain generate() at every context). Here the
    clock the marks read jumps 10 s at every energy read (a read that slow would show in any figure it sits in):
    a prefill call reads only before and after itself and still has its energy window; a decode call reads at
    its first token too, outside its time to first token and its steady (median) step."""
    import types

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init=None, handle=object()))
    b = _bench(tmp_path)
    now = [0.0]

    def perf_counter():
        now[0] += 1e-6
        return now[0]

    def read():
        now[0] += 10.0
        return int(now[0] * 1e3)

    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter=perf_counter))
    monkeypatch.setattr(b.nvml, "energy_mj", read)
    kind = "prefill" if new_tokens == 1 else "decode"
    point = measure_point(FakeBenchmark(), b, tiny_phi, kind, torch.randint(3, 500, (1, 8)), new_tokens)
    t = point.timing
    if new_tokens == 1:
        assert t.ttft_s < 1 and all(v < 1 for v in t.round_values_s), (
            f"an energy read inside the prefill call: {t.round_values_s}")
        assert point.energy.prefill_energy_window_s > 0, "the prefill's energy window went missing"
    else:
        assert t.ttft_s < 1 and t.decode_s_per_token < 1 and t.tpot_s > 10 / 3  # the read: in the first step


# not quick: the harness's real calls (the selftest tier runs it)
def test_throughput_points_read_energy_only_around_the_whole_call(tiny_phi, tmp_path, monkeypatch):
    """A throughput point's end-to-end time would hold a first-token energy read (a synchronize and a driver
    query): its calls read the counter before and after themselves only, and its joules per token are the whole
    calls' joules (prefill included) over every token they generated. The clock the marks read jumps 10 s at
    each read, and the counter counts 1 J per read: a read inside a call would show in its time, and a decode-only
    window would count fewer joules."""
    import types

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init=None, handle=object()))
    b = _bench(tmp_path)
    now, reads = [0.0], []

    def perf_counter():
        now[0] += 1e-6
        return now[0]

    def read():
        now[0] += 10.0
        reads.append(now[0])
        return 1000 * len(reads)

    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter=perf_counter))
    monkeypatch.setattr(b.nvml, "energy_mj", read)
    point = measure_point(FakeBenchmark(), b, tiny_phi, "throughput", torch.randint(3, 500, (2, 8)), 3)
    t, e = point.timing, point.energy
    assert t.median_s < 1 and t.ttft_s < 1 and all(v < 1 for v in t.round_values_s + t.decode_round_values_s), (
        f"an energy read inside a throughput call: {t.round_values_s}, {t.decode_round_values_s}")
    calls = t.rounds
    assert len(reads) >= 2 * calls, "the counter is not read around every call"
    # each call: 1 J (one read to the next) over 2 x 3 tokens, whatever its windows' split
    assert e.joules_per_token == pytest.approx(1.0 / 6), (e.joules_per_token, e.energy_note)
    assert e.energy_window_s == pytest.approx(10.0 * calls, rel=1e-3) and e.energy_note == ""


@pytest.mark.parametrize("omp, shown", [(None, "1 torch thread)"), ("2", "2 torch threads)")])
def test_a_cpu_run_of_the_tiny_models_takes_one_thread_unless_told(omp, shown):
    """Two quick tiers side by side on 2 cores, each with torch's default two threads, took 337-434 s each instead
    of 24 s (their OpenMP threads spin against each other); one thread each, 23 s. OMP_NUM_THREADS still decides."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | ({"OMP_NUM_THREADS": omp} if omp else {})
    run = subprocess.run([sys.executable, "-m", "pytest", "--co", "-p", "no:cacheprovider", "-m", "quick",
                          "--ssm-device", "cpu", "tests/selftest/test_gpus.py"], cwd=Path(__file__).parents[2],
                         env=env, capture_output=True, text=True, timeout=300)
    assert shown in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
