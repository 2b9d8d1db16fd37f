"""Detection of the Mamba implementation transformers resolved, and forcing the reference path, against the
installed transformers and against fake kernel wrappers shaped like transformers 5.x's."""

import importlib
import types

import pytest

from ssmbench import impl

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def _fake_wrapper(implementation):
    def torch_function(*args, **kwargs):
        return "reference"

    def wrapped(*args, **kwargs):  # the shape of transformers' use_kernel_func_from_hub_with_fallback wrapper
        return implementation(*args, **kwargs)

    wrapped.__wrapped__ = torch_function
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
    kernel named as unused off CUDA; never reported as running."""
    ops = impl.mamba_ops("cpu")
    assert set(ops) == set(impl.MAMBA_OPS)
    assert all(v == impl.REFERENCE or v.endswith("(unused off CUDA)") for v in ops.values()), ops
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
