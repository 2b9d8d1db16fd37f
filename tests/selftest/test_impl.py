"""Which implementation an SSM runs, read from behaviour (a tiny model's generation, recording calls into the
kernel packages), and forcing the reference path: against the installed transformers, against fake kernel
functions planted where this transformers looks for them, and (not quick) against fake kernel packages."""

import importlib
import subprocess
import sys
import textwrap

import pytest
import torch

from ssmbench import impl
from ssmbench.loading import load
from ssmbench.registry import ARCHS, resolve_model_set

SSMS = [a.key for a in ARCHS.values() if a.kernels is not None and not a.unsupported()]


@pytest.fixture(autouse=True)
def fresh_probes():
    """Probes are cached per process: each test reads this transformers afresh, and leaves no fake reading."""
    impl._cached_probe.cache_clear()
    impl._verified.cache_clear()
    yield
    impl._cached_probe.cache_clear()
    impl._verified.cache_clear()


def _package_function(module: str, name: str, body: str = "return 'fast'"):
    """A function whose globals say it lives in ``module`` (what the profile hook reads), calling a helper of
    the same package (an internal call, which must not count)."""
    namespace = {"__name__": module}
    exec(textwrap.dedent(f"""
        def _helper():
            return None
        def {name}(*args, **kwargs):
            _helper()
            {body}
    """), namespace)
    return namespace[name]


@pytest.mark.quick
@pytest.mark.selftest
def test_recorder_names_package_entry_points_only():
    scan = _package_function("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")
    other = _package_function("numpy.core", "selective_scan_fn")
    with impl.record_kernel_calls() as seen:
        scan(), other()
    assert seen.calls == [("mamba_ssm", "selective_scan_fn")]


@pytest.mark.quick
@pytest.mark.selftest
def test_ops_from_calls():
    every = [("mamba_ssm", "selective_scan_fn"), ("mamba_ssm", "selective_state_update"),
             ("causal_conv1d", "causal_conv1d_fn"), ("causal_conv1d", "causal_conv1d_update")]
    assert impl.summarize(impl.ops_from_calls(every, completed=True).ops) == "cuda-kernels"
    assert impl.summarize(impl.ops_from_calls([], completed=True).ops) == impl.REFERENCE
    mixed = impl.ops_from_calls(every[:2], completed=True)
    assert mixed.ops["causal_conv1d"] == impl.REFERENCE and mixed.ops["selective_scan"] == "mamba_ssm"
    assert impl.summarize(mixed.ops).startswith("mixed (") and mixed.unknown is None
    failed = impl.ops_from_calls([], completed=False, error="RuntimeError: boom")
    assert impl.summarize(failed.ops) == impl.UNKNOWN and "boom" in failed.unknown
    # A kernel package called through a function no operation names: nothing is claimed for the others.
    odd = impl.ops_from_calls([("mamba_ssm", "selective_scan_v3")], completed=True)
    assert impl.summarize(odd.ops) == impl.UNKNOWN and "mamba_ssm.selective_scan_v3" in odd.unknown


@pytest.mark.quick
@pytest.mark.selftest
@pytest.mark.parametrize("key", SSMS)
def test_this_transformers_is_read_and_runs_reference_off_cuda(key):
    """On this CPU every architecture gives a reading (never unknown), none runs kernels, and with kernel
    packages installed that transformers would call for CPU tensors, the suite says it forces the reference."""
    arch = ARCHS[key]
    said = impl.implementation(arch, "cpu")
    assert said in (impl.REFERENCE, impl.FORCED_SUMMARY), (said, impl.unknown_reason(arch, "cpu"))
    assert not impl.kernels_available(arch, "cpu")
    lines, warnings = impl.header_lines([arch], torch.device("cpu"))
    assert lines == [f"ssmbench: {key} implementation {said}"] and not warnings


def _cuda_only(module: str, name: str):
    return _package_function(module, name, "raise RuntimeError('Expected x.is_cuda() to be true, but got false.')")


def _fake_wrapper(kernel, torch_function):
    """The shape of transformers 5.17's kernel-fallback wrapper: calls ``kernel`` for tensors on any device,
    its torch function as ``__wrapped__``."""
    def wrapped(*args, **kwargs):
        return kernel(*args, **kwargs)

    wrapped.__wrapped__ = torch_function
    return wrapped


def _plant_cuda_only_kernels(key, monkeypatch):
    kernels = ARCHS[key].kernels
    mod = importlib.import_module(kernels.module)
    originals = {attr: getattr(mod, attr, None) for attr in kernels.ops.values()}
    if any(o is None for o in originals.values()):
        pytest.skip(f"{key}: this transformers' {kernels.module} has no kernel entry points by these names "
                    f"({', '.join(kernels.ops.values())}): 4.x's flag or 5.x's module-level functions, which check "
                    "the device themselves")
    packages = {"causal_conv1d": "causal_conv1d.causal_conv1d_interface", "selective_scan": "mamba_ssm.ops.x",
                "selective_state_update": "mamba_ssm.ops.triton.selective_state_update"}
    names = {"causal_conv1d": "causal_conv1d_fn", "causal_conv1d_update": "causal_conv1d_update",
             "selective_scan": "selective_scan_fn", "selective_state_update": "selective_state_update"}
    for op, attr in kernels.ops.items():
        torch_fn = impl._torch_function(originals[attr])
        if torch_fn is None:
            pytest.skip(f"{key}: {type(originals[attr]).__name__} at {attr}: no torch function the suite can reach")
        kernel = _cuda_only(packages.get(op, "causal_conv1d.cpp_functions"), names[op])
        monkeypatch.setattr(mod, attr, _fake_wrapper(kernel, torch_fn))
    return mod, kernels


@pytest.mark.quick
@pytest.mark.selftest
@pytest.mark.parametrize("key", SSMS)
def test_a_cpu_model_runs_the_reference_path_where_transformers_would_call_cuda_kernels(key, monkeypatch):
    """transformers 5.17 ... 5.24 call an installed package's function for tensors on any device (seen on the
    H200 with 5.17.0: a tiny Mamba on the CPU died in causal-conv1d's CUDA kernel). Here every kernel entry
    point is made to call a CUDA-only function: the probe must see it, a CPU model from the suite's loader must
    still generate, on the reference path, and say so; one built without the loader must be said to fail."""
    mod, kernels = _plant_cuda_only_kernels(key, monkeypatch)
    arch = ARCHS[key]
    assert impl.calls_kernels_off_cuda(arch)
    assert impl.implementation(arch, "cpu") == impl.FORCED_SUMMARY
    assert impl.reference_verified(arch, "cpu") is None
    spec = resolve_model_set("tiny", archs=[key])[0]
    lm = load(spec, torch.device("cpu"), torch.float32)
    assert impl.model_implementation(lm.model, arch) == impl.FORCED_SUMMARY
    from transformers import AutoModelForCausalLM

    raw = AutoModelForCausalLM.from_pretrained(spec.location, local_files_only=True)  # not the suite's loader
    assert impl.model_implementation(raw, arch) == impl.NOT_FORCED
    with impl.record_kernel_calls() as seen:
        out = lm.generate("a selective test", max_new_tokens=3, min_new_tokens=3)
    assert out.shape[1] >= 3 and not seen.calls
    with pytest.raises(RuntimeError, match="is_cuda"):  # the module is restored after each call: the fakes again
        getattr(mod, next(iter(kernels.ops.values())))()


@pytest.mark.quick
@pytest.mark.selftest
def test_a_shape_not_recognised_is_unknown_with_one_warning(monkeypatch):
    """A kernel entry point the suite cannot unwrap (a later release's new wrapper type) and a probe that
    fails: the header says unknown with one warning, the run goes on, nothing raises."""
    arch = ARCHS["mamba"]
    monkeypatch.setattr(impl, "_run_probe", lambda *a, **k: impl.Probe(dict.fromkeys(impl.OPS, impl.UNKNOWN),
                                                                         "TypeError: a new wrapper"))
    lines, warns = impl.header_lines([arch], torch.device("cpu"))
    assert lines == ["ssmbench: mamba implementation unknown"]
    assert len(warns) == 1 and "a new wrapper" in warns[0]
    assert impl.run_implementation([arch], torch.device("cpu")) == impl.UNKNOWN


@pytest.mark.quick
@pytest.mark.selftest
def test_an_entry_point_the_suite_cannot_unwrap_is_refused_not_guessed(monkeypatch):
    arch = ARCHS["mamba"]

    class Opaque(torch.nn.Module):
        def forward(self, *args):
            return None

    kernels = arch.kernels
    mod = importlib.import_module(kernels.module)
    if not hasattr(mod, kernels.ops["selective_scan"]):
        pytest.skip(f"{kernels.module} has no {kernels.ops['selective_scan']} on this transformers")
    monkeypatch.setattr(mod, kernels.ops["selective_scan"], Opaque())
    with pytest.raises(impl.ReferenceUnavailable, match="cannot unwrap"):
        with impl.reference_path(kernels):
            pass
    assert "cannot unwrap" in impl.reference_verified(arch, "cpu")


FAKE_KERNEL = ("def {name}(*args, **kwargs):\n"
               "    raise RuntimeError('Expected x.is_cuda() to be true, but got false.')\n")
FAKES = {
    "mamba_ssm/__init__.py": "",
    "mamba_ssm/ops/__init__.py": "",
    "mamba_ssm/ops/selective_scan_interface.py": ("selective_scan_fn", "mamba_inner_fn"),
    "mamba_ssm/ops/triton/__init__.py": "",
    "mamba_ssm/ops/triton/selective_state_update.py": ("selective_state_update",),
    "mamba_ssm/ops/triton/ssd_combined.py": ("mamba_chunk_scan_combined", "mamba_split_conv1d_scan_combined"),
    "causal_conv1d/__init__.py": ("causal_conv1d_fn", "causal_conv1d_update"),
}


@pytest.mark.selftest
@pytest.mark.parametrize("key", SSMS)
def test_fake_kernel_packages_installed_on_a_cpu(key, tmp_path):
    """mamba-ssm and causal-conv1d installed (fakes whose every function is CUDA-only) on a CPU machine, in a
    fresh process: whatever this transformers does with them (4.x and 5.25 keep CPU tensors off them, 5.17 ...
    5.24 call them), the suite's header names a real implementation and the loader's model generates."""
    for rel, content in FAKES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else "".join(FAKE_KERNEL.format(name=n) for n in content))
    for dist in ("mamba_ssm", "causal_conv1d"):
        info = tmp_path / f"{dist}-9.9.9.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 9.9.9\n")
    script = textwrap.dedent(f"""
        import torch
        from ssmbench import impl
        from ssmbench.loading import load
        from ssmbench.registry import ARCHS, resolve_model_set
        arch = ARCHS[{key!r}]
        print("HEADER", impl.header_lines([arch], torch.device("cpu")))
        lm = load(resolve_model_set("tiny", archs=[{key!r}])[0], torch.device("cpu"), torch.float32)
        with impl.record_kernel_calls() as seen:
            out = lm.generate("a selective test", max_new_tokens=3, min_new_tokens=3)
        print("CALLS", seen.calls, "CALLED_OFF_CUDA", impl.calls_kernels_off_cuda(arch))
        print("MODEL", impl.model_implementation(lm.model, arch))
    """)
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("HEADER"))
    model = next(line for line in done.stdout.splitlines() if line.startswith("MODEL"))
    assert "unknown" not in header and "WARNING" not in header, header
    assert model.endswith((impl.REFERENCE, impl.FORCED_SUMMARY)), model
    assert "CALLS [] " in done.stdout, done.stdout


@pytest.mark.quick
@pytest.mark.selftest
@pytest.mark.parametrize("key", ["mamba", "bamba"])
def test_forcing_hooks_leave_the_outputs_alone(key):
    """The hooks that force the reference path (a model off CUDA on 5.17-5.24 with kernels installed) must change
    which code runs, never what a mixer returns: a forward hook that returns a value replaces the output, and the
    hooks once returned reference_path's __exit__ (False), which dropped every mixer from the residual stream
    (logits 1.16 off, seen as a failed save/load check on a GPU). Here, with no kernels, forcing runs the same
    code, so the logits must be bit-identical."""
    from ssmbench.forcing import ReferenceUnavailable, _hook_reference
    from ssmbench.inputs import PROMPTS

    spec = next(s for s in resolve_model_set("tiny", archs=[key]))
    if spec.arch.unsupported():
        pytest.skip(f"{key}: {spec.arch.unsupported()}")
    if impl.calls_kernels_off_cuda(spec.arch):
        pytest.skip(f"{key}: this transformers calls the installed kernels for CPU tensors, so the loader has forced "
                    "the reference path already: no unforced CPU model to compare with here")
    lm = load(spec, torch.device("cpu"), torch.float32)
    ids = lm.encode(PROMPTS[0])["input_ids"]
    kernels = spec.arch.kernels
    module = importlib.import_module(kernels.module)
    entries = {n: getattr(module, n, None) for n in (kernels.fast_path_flag, *kernels.ops.values())}
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
        _hook_reference(lm.model, kernels)
        _hook_reference(lm.model, kernels)  # hooked twice (the loader, then a check): still one pair of hooks
        try:
            after = lm.model(input_ids=ids).logits
        except ReferenceUnavailable as exc:
            pytest.skip(f"{key}: the reference path cannot be forced on this transformers: {exc}")
    assert torch.equal(before, after), f"{key}: forcing the reference path changed the logits"
    assert {n: getattr(module, n, None) for n in entries} == entries, (
        f"{key}: the modeling module's kernel entry points were not restored after a forced forward")
