"""What a run is: the device, the model set, and -- one pure function -- how each test runs on each model
(its marks, a skip reason, the dtype its model is loaded in)."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import pytest
import torch

from ssmbench import gpus, impl, kernel_configs
from ssmbench.loading import resolve_dtype
from ssmbench.registry import ModelSetError, ModelSpec, parse_model_paths, resolve_model_set

from . import gate, options


@dataclass
class RunSettings:
    device: torch.device
    dtype: str
    model_set: str
    specs: list[ModelSpec]


settings_key = pytest.StashKey[RunSettings]()


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--ssm-device cuda was asked for, but torch sees no CUDA device")
    return torch.device(choice)


def configure(config: pytest.Config) -> None:
    """First, before anything touches CUDA: an xdist worker takes its own GPU; then the run's settings."""
    device_choice = options.get(config, "ssm_device")
    try:
        workerinput = getattr(config, "workerinput", {})
        gpus.pin_this_process(workerinput.get("workerid"), device_choice, workerinput.get("ssmbench_slot"))
    except gpus.PinningError as exc:
        raise pytest.UsageError(str(exc)) from None
    device = _device(device_choice)
    gate.configure(config, device.type == "cuda")  # -m gate: its preset, before any option below is read
    _use_tests_tiny_checkpoints(config.rootpath)
    model_set = options.get(config, "models")
    try:
        paths = parse_model_paths(config.getoption("model_path"))
        specs = resolve_model_set(model_set, paths=paths, archs=options.get(config, "archs"))
    except ModelSetError as exc:
        raise pytest.UsageError(str(exc)) from None
    if device.type == "cpu":
        threads = cpu_threads(workerinput, os.cpu_count())
        if threads is None and "OMP_NUM_THREADS" not in os.environ and not any(
                spec.source == "pretrained" and not spec.unavailable for spec in specs):
            # On a CPU only the tiny models run (full-size synthetic ones are GPU only), and their operations are
            # too small to share among threads: one thread ran the quick tier in 24 s alone on 2 cores, as two did,
            # and in 23 s beside another quick tier, where two threads each took 337-434 s (the two processes'
            # OpenMP threads spinning against each other). OMP_NUM_THREADS, where set, is left to decide.
            threads = 1
        if threads:
            torch.set_num_threads(threads)
    config.stash[settings_key] = RunSettings(device, options.get(config, "ssm_dtype"), model_set, specs)
    # float32 means float32: TF32 in cuDNN convolutions (on by default) perturbs Mamba's causal conv by ~1e-3
    # per layer, which 64 layers amplify past any float32 tolerance. bfloat16 work is unaffected.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # Triton's float32 dots default to TF32 whatever torch says: Mamba-2's SSD kernels (mamba-ssm, Triton) put the
    # tiny Mamba-2's float32 logits 2-4e-4 from its reference loop on the H200, past float32's 1e-4. IEEE float32
    # for any run that may hold float32 models; bfloat16 and float16 operands are unaffected. A value the user set
    # stays.
    if options.get(config, "ssm_dtype") in ("auto", "float32"):
        os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")


def cpu_threads(workerinput: dict, cpus: int | None) -> int | None:
    """Torch threads for a worker computing on the CPU: the host's cores shared among its workers. Left alone
    (None) outside xdist. Each of two workers on 2 cores taking both (torch's default) made the quick tier run
    164 s instead of 24 s: the workers' spinning OpenMP threads starve each other."""
    if not workerinput.get("workerid"):
        return None
    workers = workerinput.get("ssmbench_host_workers") or workerinput.get("workercount") or 1
    return max(1, (cpus or 1) // workers)


def _use_tests_tiny_checkpoints(rootpath) -> None:
    """The embedded tiny checkpoints: the checkout's, where the suite runs from one; installed from a wheel
    (site-packages holds no fixtures/), those beside the test tree pytest runs."""
    from ssmbench.archs import base

    here = rootpath / "fixtures" / "tiny"
    if not base.TINY_DIR.is_dir() and here.is_dir():
        base.TINY_DIR = here


def settings(config: pytest.Config) -> RunSettings:
    return config.stash[settings_key]


def nothing_checked(config: pytest.Config) -> str | None:
    """Why the run checked nothing it was asked to: every model of an explicitly requested set (pretrained)
    was unavailable. A CI gate must not go green on that."""
    s = settings(config)
    if s.model_set == "pretrained" and s.specs and all(spec.unavailable for spec in s.specs):
        return "every model of --ssm-models pretrained was unavailable: " + "; ".join(
            f"{spec.name}: {spec.unavailable}" for spec in s.specs)
    return None


def sessionfinish(session: pytest.Session) -> None:
    if nothing_checked(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


def header(config: pytest.Config) -> list[str]:
    import transformers

    s = settings(config)
    if s.device.type == "cuda":
        props = torch.cuda.get_device_properties(s.device)
        dev = f"cuda ({props.name}, {props.total_memory / 2**30:.1f} GiB, sm_{props.major}{props.minor})"
    else:
        threads = torch.get_num_threads()
        dev = f"cpu ({platform.machine()}, {threads} torch thread{'' if threads == 1 else 's'})"
    models = ", ".join(s.name + (" [unavailable]" if s.unavailable else "") for s in s.specs)
    # What each SSM architecture of the run runs here, read from a tiny model's behaviour (ssmbench.impl).
    archs = list({spec.arch.key: spec.arch for spec in s.specs}.values())
    # The probe is no check: mamba-ssm's Triton kernels run it with one configuration each (ssmbench.kernel_configs:
    # it would autotune every Mamba-2 and hybrid tiny model's kernels before the first test), restored after.
    pin = s.device.type == "cuda" and options.get(config, "kernel_configs") != "autotuned"
    with kernel_configs.pin() if pin else contextlib.nullcontext() as pinned:
        impl_lines, impl_warnings = impl.header_lines(archs, s.device)
    if pinned is not None and pinned.note:
        impl_warnings.append(f"ssmbench: WARNING: {pinned.note}")
    return [
        f"ssmbench: device {dev}",
        f"ssmbench: model set {s.model_set}: {models}",
        *(f"ssmbench:   {spec.name}: {_source(spec)}" for spec in s.specs),
        f"ssmbench: dtype {s.dtype} (TF32 off; Triton float32 dots {os.environ.get('TRITON_F32_DEFAULT', 'tf32')}); "
        f"torch {torch.__version__}, transformers {transformers.__version__}",
        *impl_lines,
        *impl_warnings,
    ]


def _source(spec: ModelSpec) -> str:
    """Where a model comes from, as the header says it."""
    if spec.source == "synthetic":
        return f"{spec.arch.hub_id}'s configuration, random weights"
    where = spec.location or spec.arch.hub_id
    return f"{spec.source}, {where}" + (f" (unavailable: {spec.unavailable})" if spec.unavailable else "")


# --- how a test runs --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestPlan:
    """How one test runs on one model: selected at all (``runs``), its marks, why it skips (None: it runs),
    and the dtype its model is loaded in."""

    runs: bool
    marks: tuple[str, ...] = ()
    skip: str | None = None
    dtype: torch.dtype | None = None
    xdist_group: str | None = None


# What a ``needs(...)`` mark can ask of a model's architecture (``ssmbench.archs.Arch`` fields).
ARCH_PIECES = {
    "kernels": "no fused kernels the suite knows where transformers resolves",
    "suite_graph": "no support in the suite's CUDA-graph decoder",
    "layers": "no layer kinds with a float64 reference",
    "cache_bytes": "no cache-size formula",
    "native": "no mapping onto mamba-ssm's own model (the native backend)",
    "boundaries": "no block boundary (conv window, chunk, rotary-scaling threshold) to decode across",
}


def plan(spec: ModelSpec, *, test: str, families: tuple[str, ...] | None, sources: tuple[str, ...] | None,
         heavy: bool, benchmark: bool, device: torch.device, model_set: str, dtype_choice: str,
         needs: tuple[str, ...] = (), gpu_only: str | None = None) -> TestPlan:
    """The one place that decides how a test runs on a model.

    - ``family``/``source`` marks restrict a test to some models (the others are not generated at all);
      ``needs`` (architecture pieces, ``ARCH_PIECES``) skips it, saying which, where the architecture lacks one;
    - tiny models run every check in the quick tier; full-size models too, except checks marked heavy (an 11 GB
      save, say), which go to the slow tier; benchmarks are their own tier (-m benchmark);
    - an architecture newer than the installed transformers (``Arch.min_transformers``) skips, saying so;
    - full-size models are marked gpu and skip off CUDA in the synthetic set (and in auto); an unavailable
      checkpoint skips with where it was looked for;
    - the dtype: benchmarks bfloat16 for full-size models, conformance per ``resolve_dtype``;
    - xdist: a model's tests share a group, except each heavy check of a full-size model (a unit of its own).
    """
    if (families and spec.family not in families) or (sources and spec.source not in sources):
        return TestPlan(runs=False)
    marks = [] if benchmark else ["slow" if heavy and spec.large else "quick"]
    if spec.large:
        marks.append("gpu")
    skip = None
    missing = [piece for piece in needs if not getattr(spec.arch, piece)]
    if spec.arch.unsupported():
        skip = f"{spec.name}: {spec.arch.unsupported()}"
    elif missing:
        skip = f"{spec.name}: {spec.arch.key} has " + "; ".join(ARCH_PIECES[piece] for piece in missing)
    elif spec.unavailable:
        skip = f"{spec.name}: {spec.unavailable}"
    elif device.type != "cuda" and (spec.source == "synthetic" or (spec.large and model_set == "auto")):
        skip = f"{spec.name}: full-size model, GPU only in this model set (device here: cpu)"
    elif gpu_only and device.type != "cuda":
        skip = f"{spec.name}: {gpu_only} (device here: {device.type})"
    dtype = resolve_dtype(dtype_choice, spec, "benchmark" if benchmark else "conformance")
    group = gpus.group_name(spec.name, test if heavy and spec.large else None)
    return TestPlan(True, tuple(marks), skip, dtype, group)


def plan_for(config: pytest.Config, spec: ModelSpec, definition, test: str) -> TestPlan:
    """``plan`` for a test function (its marks read from its definition or item)."""
    s = settings(config)
    family, source = definition.get_closest_marker("family"), definition.get_closest_marker("source")
    gpu_only = definition.get_closest_marker("gpu_only")
    needs = tuple(piece for mark in definition.iter_markers("needs") for piece in mark.args)
    unknown = sorted(set(needs) - set(ARCH_PIECES))
    if unknown:
        raise pytest.UsageError(f"{test}: needs({', '.join(unknown)}): unknown; valid: {', '.join(ARCH_PIECES)}")
    return plan(spec, test=test, needs=needs,
                families=family.args if family else None, sources=source.args if source else None,
                heavy=definition.get_closest_marker("heavy") is not None,
                benchmark=definition.get_closest_marker("benchmark") is not None,
                device=s.device, model_set=s.model_set, dtype_choice=s.dtype,
                gpu_only=(gpu_only.args[0] if gpu_only.args else "needs a GPU") if gpu_only else None)


def parametrize_specs(metafunc: pytest.Metafunc) -> None:
    """Every test that asks for ``spec`` runs once per model of the set, as ``plan`` says."""
    if "spec" not in metafunc.fixturenames:
        return
    params = []
    for spec in settings(metafunc.config).specs:
        p = plan_for(metafunc.config, spec, metafunc.definition, metafunc.function.__name__)
        if not p.runs:
            continue
        marks = [getattr(pytest.mark, m) for m in p.marks] + [pytest.mark.xdist_group(p.xdist_group)]
        if p.skip:
            marks.append(pytest.mark.skip(reason=p.skip))
        params.append(pytest.param(spec, marks=marks, id=spec.name))
    if "layer_kind" in metafunc.fixturenames:  # one instance per kind of layer each architecture has
        joint = [pytest.param(p.values[0], kind, marks=p.marks, id=f"{p.id}-{kind}")
                 for p in params for kind in (p.values[0].arch.layers or [None])]
        metafunc.parametrize(("spec", "layer_kind"), joint, indirect=["spec"], scope="session")
        return
    metafunc.parametrize("spec", params, indirect=True, scope="session")
