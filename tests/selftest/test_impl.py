"""Detection of the Mamba implementation transformers resolved, and forcing the reference path, against the
installed transformers and against fake kernel wrappers shaped like transformers 5.x's."""

import importlib
import types

import pytest
import torch

from ssmbench import impl
from ssmbench.loading import load
from ssmbench.registry import ARCHS, resolve_model_set

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def _fake_wrapper(implementation, torch_function=None):
    """The shape of transformers' use_kernel_func_from_hub_with_fallback wrapper: ``implementation`` in its
    closure, the torch function (by default one returning "reference") as ``__wrapped__``."""
    def wrapped(*args, **kwargs):
        return implementation(*args, **kwargs)

    wrapped.__wrapped__ = torch_function or (lambda *args, **kwargs: "reference")
    return wrapped


def test_resolved_kernel_is_named_by_its_package():
    kernel = types.FunctionType((lambda: "fast").__code__, {}, "selective_scan_fn")
    kernel.__module__ = "mamba_ssm.ops.selective_scan_interface"
    assert impl._origin(impl._resolved(_fake_wrapper(kernel))) == "mamba_ssm"


def test_fallback_to_transformers_code_is_the_reference_path():
    fallback = types.FunctionType((lambda: "slow").__code__, {}, "mamba_selective_scan")
    fallback.__module__ = "transformers.models.mamba.modeling_mamba"
    assert impl._origin(impl._resolved(_fake_wrapper(fallback))) == impl.REFERENCE


def test_summaries():
    assert impl.summarize(dict.fromkeys(impl.MAMBA_OPS, impl.REFERENCE)) == impl.REFERENCE
    assert impl.summarize(dict.fromkeys(impl.MAMBA_OPS, "mamba_ssm")) == "cuda-kernels"
    mixed = impl.summarize({**dict.fromkeys(impl.MAMBA_OPS, "mamba_ssm"), "causal_conv1d": impl.REFERENCE})
    assert mixed.startswith("mixed (") and "causal_conv1d=torch-reference" in mixed


def test_off_cuda_mamba_runs_the_reference_loop():
    """On a CPU every operation is the reference loop -- or, where kernels are installed (a GPU machine), a
    kernel named as unused off CUDA, or as forced off it by the suite; never reported as running."""
    ops = impl.mamba_ops("cpu")
    assert set(ops) == set(impl.MAMBA_OPS)
    labels = ("(unused off CUDA)", impl.FORCED_OFF_CUDA)
    assert all(v == impl.REFERENCE or v.endswith(labels) for v in ops.values()), ops
    assert not impl.kernels_available("cpu")


def test_reference_path_swaps_and_restores_the_module():
    mod = importlib.import_module("transformers.models.mamba.modeling_mamba")
    if hasattr(mod, "is_fast_path_available"):  # 4.x
        names = ["is_fast_path_available"]
    elif impl._global_regime(mod, impl.MAMBA):  # seen 4.56.2 ... 5.14.1: module-level kernel functions
        names = list(impl.MAMBA.fast_globals())
    else:
        names = list(impl.MAMBA_OPS.values())
    absent = object()  # 5.x sets the module-level functions when a mixer is built: maybe not yet
    before = {n: getattr(mod, n, absent) for n in names}
    with impl.reference_path():
        during = {n: getattr(mod, n) for n in names}
        assert all(during[n] is not before[n] or during[n] in (False, None) for n in names)
        assert impl.mamba_ops("cuda")["selective_scan"] == impl.REFERENCE  # what the forward will now run
    assert {n: getattr(mod, n, absent) for n in names} == before


def _cuda_only(name):
    def kernel(*args, **kwargs):
        raise RuntimeError("Expected x.is_cuda() to be true, but got false.")
    kernel.__module__ = "causal_conv1d.cpp_functions" if "conv" in name else "mamba_ssm.ops.selective_scan_interface"
    kernel.__name__ = name
    return kernel


@pytest.mark.parametrize("key", [a.key for a in ARCHS.values() if a.kernels is not None and not a.unsupported()])
def test_a_cpu_model_runs_the_reference_path_where_transformers_would_call_cuda_kernels(key, monkeypatch):
    """transformers' kernel-fallback wrappers call an installed package's function for tensors on any device
    (seen on the H200 with 5.17.0: a tiny Mamba on the CPU died in causal-conv1d's CUDA kernel). Here every
    wrapper is made to resolve to a CUDA-only function: a CPU model must still generate, on the reference path,
    and say so."""
    kernels = ARCHS[key].kernels
    mod = importlib.import_module(kernels.module)
    if hasattr(mod, kernels.fast_path_flag) or impl._global_regime(mod, kernels) or not all(
            hasattr(mod, attr) for attr in kernels.ops.values()):
        pytest.skip(f"{key}: this transformers' {kernels.module} has no kernel-fallback wrappers (4.x's flag or "
                    "5.x's module-level functions, which check the device themselves)")
    for attr in kernels.ops.values():
        original = getattr(mod, attr)
        monkeypatch.setattr(mod, attr, _fake_wrapper(_cuda_only(attr), getattr(original, "__wrapped__", original)))
    assert impl.kernels_called_off_cuda(kernels)
    spec = resolve_model_set("tiny", archs=[key])[0]
    lm = load(spec, torch.device("cpu"), torch.float32)
    assert impl.model_implementation(lm.model, kernels) == impl.FORCED_SUMMARY
    from transformers import AutoModelForCausalLM

    raw = AutoModelForCausalLM.from_pretrained(spec.location, local_files_only=True)  # not the suite's loader
    assert "not forced" in impl.model_implementation(raw, kernels)
    out = lm.generate("a selective test", max_new_tokens=3, min_new_tokens=3)
    assert out.shape[1] >= 3
    with pytest.raises(RuntimeError, match="is_cuda"):  # the module is restored after each call: the fakes again
        getattr(mod, next(iter(kernels.ops.values())))()
