"""The benchmark sweep in pytest: its settings from the options, the context / batch / backend axes, the run
order (each model's eager points, then compiled, then graphed), and measuring a point through
pytest-benchmark's ``pedantic`` (``ssmbench.points`` does the measuring; its typed errors become skips)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import transformers

from ssmbench import devices, impl, results
from ssmbench.measure import Nvml
from ssmbench.names import BACKENDS
from ssmbench.point import Point
from ssmbench.points import CPU_CONTEXTS, GPU_CONTEXTS, BackendUnavailable, BenchSettings, PointOutOfMemory
from ssmbench.points import measure_point as measure

from . import options
from .settings import settings

bench_key = pytest.StashKey[BenchSettings]()
run_key = pytest.StashKey[str]()


def run_id(config: pytest.Config) -> str:
    """This run's id, shared by its xdist workers (the controller hands it out): their points merge in one
    results file."""
    import uuid

    if run_key not in config.stash:
        config.stash[run_key] = getattr(config, "workerinput", {}).get("ssmbench_run") or uuid.uuid4().hex[:12]
    return config.stash[run_key]


def batch_sizes(config: pytest.Config) -> list[int]:
    """The sweep's batch sizes: --ssm-batch-sizes, else 1 ... 256 on a GPU, 1 and 4 on a CPU."""
    gpu = settings(config).device.type == "cuda"
    return sorted(options.get(config, "batch_sizes") or ([2 ** i for i in range(9)] if gpu else [1, 4]))


def contexts_of(config: pytest.Config) -> list[int]:
    """The sweep's contexts: --ssm-contexts, else the GPU's or the CPU's default."""
    gpu = settings(config).device.type == "cuda"
    return options.get(config, "contexts") or options.int_list(GPU_CONTEXTS if gpu else CPU_CONTEXTS)


def check_options(config: pytest.Config) -> None:
    """At configure: the calibration options name contexts and batch sizes the sweep runs, and come with
    --ssm-calibrate (otherwise they would calibrate nothing and say nothing)."""
    def show(values) -> str:
        return ",".join(map(str, values))

    for dest, flag, runs, runs_flag in (("calibrate_contexts", "--ssm-calibrate-contexts", contexts_of(config),
                                         "--ssm-contexts"),
                                        ("calibrate_batches", "--ssm-calibrate-batches", batch_sizes(config),
                                         "--ssm-batch-sizes")):
        asked = options.get(config, dest)
        if not asked:
            continue
        if not config.getoption("calibrate"):
            raise pytest.UsageError(f"{flag} {show(asked)} calibrates nothing without --ssm-calibrate")
        if not set(asked) <= set(runs):
            raise pytest.UsageError(f"{flag} {show(asked)}: only what the sweep runs can be calibrated; "
                                    f"{runs_flag} here: {show(runs)}")


def _make_bench_settings(config: pytest.Config) -> BenchSettings:
    s = settings(config)
    gpu = s.device.type == "cuda"
    contexts = contexts_of(config)
    batches = batch_sizes(config)
    prompts = options.get(config, "throughput_prompts") or ([2048, 8192, 32768] if gpu else [min(contexts)])
    throughput_new = options.get(config, "throughput_new_tokens") or (128 if gpu else 8)
    decode_tokens = options.get(config, "decode_tokens") or (32 if gpu else 8)
    name = torch.cuda.get_device_name(s.device) if gpu else "cpu"
    profile = devices.profile_for(name) if gpu else devices.DeviceProfile("cpu", "cpu", (), None, None, None)
    mamba_impl = impl.run_implementation([spec.arch for spec in s.specs], s.device)
    meta = {"device": name, "model_set": s.model_set, "models": ",".join(x.name for x in s.specs),
            "dtype": s.dtype, "mamba_impl": mamba_impl, "torch": torch.__version__,
            "transformers": transformers.__version__}
    if config.getoption("ssm_inject", None):  # pytest_ssmbench.inject: these points are deliberately wrong
        meta["injected"] = config.getoption("ssm_inject")
    results_file = options.get(config, "results_file")
    worker = getattr(config, "workerinput", {}).get("workerid")
    store = results.ResultStore(Path(results_file) if results_file else None, meta, run=run_id(config),
                                writer=worker or f"pid{os.getpid()}")
    calibrate, calibrate_batches = (), ()
    if config.getoption("calibrate"):
        calibrate = tuple(options.get(config, "calibrate_contexts") or sorted({min(contexts), max(contexts)}))
        calibrate_batches = tuple(options.get(config, "calibrate_batches")
                                  or sorted({batches[0], batches[len(batches) // 2]}))
    tolerance = options.get(config, "calibrate_tolerance") or (5.0 if gpu else 100.0)
    rounds = options.get(config, "bench_rounds")
    return BenchSettings(
        contexts=contexts, batch_sizes=batches, backends=options.get(config, "backends"), decode_tokens=decode_tokens,
        rounds=None if rounds == "auto" else rounds, profile=profile, impl=mamba_impl, store=store,
        nvml=Nvml(s.device.index or 0), target=options.get(config, "bench_target") / 100,
        max_time_s=options.get(config, "bench_max_time"), calibrate_contexts=calibrate,
        calibrate_batches=calibrate_batches,
        calibrate_tolerance=tolerance / 100, calibrate_max_s=options.get(config, "calibrate_max_time"),
        throughput_prompts=prompts, throughput_new_tokens=throughput_new)


def bench_settings(config: pytest.Config) -> BenchSettings:
    """Built on first use: pytest-benchmark asks for machine_info inside its own pytest_configure."""
    if bench_key not in config.stash:
        config.stash[bench_key] = _make_bench_settings(config)
    return config.stash[bench_key]


def parametrize(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("benchmark") is None:
        return
    b = bench_settings(metafunc.config)
    if "context" in metafunc.fixturenames:
        metafunc.parametrize("context", b.contexts, ids=lambda c: f"ctx{c}")
    if "prompt" in metafunc.fixturenames:
        metafunc.parametrize("prompt", b.throughput_prompts, ids=lambda n: f"prompt{n}")
    if "batch" in metafunc.fixturenames:
        metafunc.parametrize("batch", b.batch_sizes, ids=lambda n: f"bs{n}")
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", b.backends)


BACKEND_ORDER = {name: i for i, name in enumerate(BACKENDS)}


def order_items(items: list) -> None:
    """Tests marked after_sweep (they read what the sweep measured) last; within a model's benchmarks every
    eager point before the compiled ones and those before the graphed ones, so torch.compile's state is built
    once and released once per model. A model's tests stay where pytest put them."""
    def params(item) -> dict:
        callspec = getattr(item, "callspec", None)
        return callspec.params if callspec else {}

    def model_of(index: int, item) -> object:
        spec = params(item).get("spec")
        return spec.name if spec is not None else ("item", index)

    first: dict = {}
    for index, item in enumerate(items):
        first.setdefault(model_of(index, item), index)
    order = {id(item): (item.get_closest_marker("after_sweep") is not None, first[model_of(i, item)],
                        BACKEND_ORDER.get(params(item).get("backend"), 0)) for i, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])


def skip_past_out_of_memory(b: BenchSettings, model: str, backend: str, prompt: int, batch: int) -> None:
    """A throughput point larger than a batch that already ran out of memory (same model, backend and prompt)
    is not attempted: it skips, saying where memory ran out."""
    oom = b.throughput_oom.get((model, backend, prompt))
    if oom is not None and batch > oom:
        pytest.skip(f"{model} ({backend}, prompt {prompt}): out of memory at batch {oom} already (recorded); "
                    f"batch {batch} is not attempted")


def measure_point(benchmark, b: BenchSettings, lm, kind: str, ids: torch.Tensor, new_tokens: int,
                  backend: str = "eager") -> Point:
    """Measure one point through pytest-benchmark (``ssmbench.points.measure_point``), record it in
    ``benchmark.extra_info``; a backend this model or device cannot run, or out of memory (recorded), skips."""
    batch, context = ids.shape
    benchmark.group = f"{kind}-ctx{context}-bs{batch}-{backend}"

    def runner(call, setup, rounds, warmup):
        benchmark.pedantic(call, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)

    try:
        point = measure(b, lm, kind, ids, new_tokens, backend, runner,
                        timing_on=not getattr(benchmark, "disabled", False))
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    except PointOutOfMemory as exc:
        if kind == "throughput":
            key = (lm.name, backend, context)
            b.throughput_oom[key] = min(batch, b.throughput_oom.get(key, batch))
        benchmark.extra_info.update(exc.point.flat())
        message = str(exc)
        del exc
        pytest.skip(message)
    benchmark.extra_info.update({k: v for k, v in point.flat().items() if not isinstance(v, list)})
    seen = point.timing.new_tokens_seen  # new tokens of each call (distinct counts): the gate holds them exactly
    benchmark.extra_info.update(tokens_seen=min(seen, default=None), tokens_seen_max=max(seen, default=None))
    return point
