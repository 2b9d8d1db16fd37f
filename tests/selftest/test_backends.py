"""Which decode path each backend runs, per model family and transformers version (fake models stand in for
the 4.x class flag), and what the suite's graph decoder refuses."""

import types

import pytest
import torch

from ssmbench import backends, bench, cache, compat, graphs
from ssmbench.point import SUITE_GRAPH, TRANSFORMERS_EAGER, TRANSFORMERS_STATIC

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def _lm(family, supports_static=None, graph=None):
    model = types.SimpleNamespace()
    if supports_static is not None:
        model._supports_static_cache = supports_static  # transformers 4.x declares it per class
    arch = types.SimpleNamespace(key=f"fake-{family}", model_type=f"fake-{family}",
                                 suite_graph=family == "ssm" if graph is None else graph)
    return types.SimpleNamespace(spec=types.SimpleNamespace(family=family, arch=arch), name=f"fake-{family}",
                                 model=model)


@pytest.mark.parametrize("family,flag,backend,path", [
    ("ssm", None, "eager", TRANSFORMERS_EAGER),
    ("ssm", None, "compiled", TRANSFORMERS_STATIC),  # 5.x: the flag is gone, Mamba compiles
    ("ssm", False, "compiled", SUITE_GRAPH),  # 4.x Mamba: static cache silently ignored
    ("ssm", None, "graphed", SUITE_GRAPH),
    ("attention", True, "compiled", TRANSFORMERS_STATIC),
    ("attention", None, "compiled", TRANSFORMERS_STATIC),
])
def test_decode_path(family, flag, backend, path):
    assert backends.decode_path(_lm(family, flag), backend) == path


def test_graphed_refuses_attention_models_and_unknown_backends():
    with pytest.raises(ValueError, match="for fake-attention use 'compiled'"):
        backends.decode_path(_lm("attention"), "graphed")
    with pytest.raises(ValueError, match="valid: eager, compiled, graphed"):
        backends.decode_path(_lm("ssm"), "jit")


def test_compiled_is_refused_where_4x_would_silently_stay_eager():
    """An SSM without the suite's graph (Mamba-2, FalconMamba) on a transformers that ignores the static cache
    for it: no point labelled compiled that is eager."""
    with pytest.raises(ValueError, match="offers no compiled decode for fake-ssm"):
        backends.decode_path(_lm("ssm", supports_static=False, graph=False), "compiled")
    assert backends.decode_path(_lm("ssm", supports_static=None, graph=False), "compiled") == TRANSFORMERS_STATIC


def test_static_cache_flag_reading():
    assert compat.static_cache_compile_offered(types.SimpleNamespace(_supports_static_cache=False)) is False
    assert compat.static_cache_compile_offered(types.SimpleNamespace()) is True


def test_reachable_tensors_line_up_and_skip_duplicates():
    a, b = torch.zeros(2), torch.ones(3)
    layer = types.SimpleNamespace(conv={0: a}, rec={0: b}, again=a, device=torch.device("cpu"), n=2)
    fake_cache = types.SimpleNamespace(layers=[layer, types.SimpleNamespace(conv={0: torch.zeros(4)})])
    found = cache.reachable_tensors(fake_cache)
    assert [t.shape[0] for t in found] == [2, 3, 4]
    assert found[0] is a


class _FakeModel:  # a model the decoder can hold weakly, as it holds a real nn.Module
    device = torch.device("cpu")

    def forward(self, input_ids=None, cache=None):
        return None


def test_capture_refused_off_cuda():
    model = _FakeModel()
    with pytest.raises(ValueError, match="needs a CUDA model"):
        graphs.GraphedMambaDecoder(model, capture=True)


def _recording_call(clears_per_call):
    """A call whose n-th invocation clears cuBLAS's workspaces clears_per_call[n] times (torch.compile's graph
    trees do so around each warm-up and recording), then none."""
    calls = []

    def call():
        for _ in range(clears_per_call[len(calls)] if len(calls) < len(clears_per_call) else 0):
            torch._C._cuda_clearCublasWorkspaces()
        calls.append(1)
    return call, calls


def test_a_compiled_point_warms_up_until_two_calls_in_a_row_record_no_graph(monkeypatch):
    # phi-2 compiled on the H200: the first calls after compilation still recorded graphs (and cuBLAS
    # re-allocated 32 MiB after each), so rounds that started at the second call peaked 15 % over plain calls.
    # Mamba's at 131072: one quiet call (a warm-up of a new path), then recordings in the rounds (6.1 ms against
    # 5.3 plainly) -- one quiet call does not settle.
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None, raising=False)
    original = torch._C._cuda_clearCublasWorkspaces
    call, calls = _recording_call([4, 2, 0, 2, 0, 0, 5])  # a quiet call, a recording, then two quiet ones
    with bench.WorkspaceClears() as clears:
        assert bench.settle_graphs(call, lambda: None, clears) == (6, True)
    assert clears.count == 8 and len(calls) == 6
    assert torch._C._cuda_clearCublasWorkspaces is original  # restored on exit


def test_a_compiled_point_quiet_from_its_second_call_settles_after_three(monkeypatch):
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None, raising=False)
    call, calls = _recording_call([3])  # compiles and records once, then nothing
    with bench.WorkspaceClears() as clears:
        assert bench.settle_graphs(call, lambda: None, clears) == (3, True)


def test_a_compiled_point_recording_for_eleven_calls_still_settles_within_the_cap(monkeypatch):
    # Mamba's compiled decode at 32768 on the H200 cleared workspaces in 11 calls, then settled.
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None, raising=False)
    call, calls = _recording_call([2] * 11)
    with bench.WorkspaceClears() as clears:
        assert bench.settle_graphs(call, lambda: None, clears) == (13, True)


def test_a_compiled_point_that_never_settles_says_so(monkeypatch):
    monkeypatch.setattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None, raising=False)
    call, calls = _recording_call([1] * 100)
    with bench.WorkspaceClears() as clears:
        assert bench.settle_graphs(call, lambda: None, clears, max_calls=5) == (5, False)
    assert len(calls) == 5


def test_without_the_workspace_hook_one_call_is_the_warm_up_and_settling_is_unknown(monkeypatch):
    monkeypatch.delattr(torch._C, "_cuda_clearCublasWorkspaces", raising=False)  # a CPU build has none
    call, calls = _recording_call([])
    with bench.WorkspaceClears() as clears:
        assert bench.settle_graphs(call, lambda: None, clears) == (1, None)
