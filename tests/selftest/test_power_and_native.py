"""Two guards against checks that cannot fail, and the native backend's plumbing on a CPU.

- A comparison whose tolerance the model's noise floor widens past ``compare.POWER_LIMIT`` raises
  ``Powerless``, which the plugin reports as a skip with the reason (synthetic mamba-2.8b in bfloat16: noise floor
  126 %, so its old tolerance of 12.6x passed any logits).
- The native backend: mamba-ssm's ``MambaLMHeadModel`` takes transformers' tensors themselves, and its decode loop
  (mamba-ssm's ``decode()`` with ``cg=True``) yields exactly transformers' greedy tokens. mamba-ssm needs CUDA,
  so a fake package stands in: the real key layout (what the mapping must produce), a forward that recomputes
  the whole sequence through transformers' model with the native tensors (no cache to get wrong), and a
  ``update_graph_cache`` whose ``run`` feeds one token at a time as the captured graph does. On a GPU,
  ``test_native_matches_transformers`` checks the real package.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from pytest_ssmbench import plugin
from ssmbench import compare, native
from ssmbench.archs import ARCHS
from ssmbench.loading import load
from ssmbench.registry import resolve_model_set

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


def test_a_tolerance_the_noise_floor_widens_past_the_limit_is_powerless():
    assert compare.tolerance(compare.LOGITS_RTOL, torch.float32, 0.0) == 1e-4
    assert compare.tolerance(compare.LOGITS_RTOL, torch.bfloat16, 0.01) == pytest.approx(0.1)  # 10 x floor
    with pytest.raises(compare.Powerless, match="differ by 126 % in bfloat16, so the tolerance would be 1256 %"):
        compare.tolerance(compare.LOGITS_RTOL, torch.bfloat16, 1.2565)
    unrelated = torch.randn(50), torch.randn(50)
    with pytest.raises(compare.Powerless):  # before: passed, relative error ~1.5 against a tolerance of 12.6
        compare.assert_logits_close("x", *unrelated, torch.bfloat16, 1.2565)
    # Same tokens are no evidence either where a difference would have been accepted anyway.
    same = torch.tensor([3, 4, 5])
    with pytest.raises(compare.Powerless):
        compare.assert_same_generation("x", same, same, None, torch.bfloat16, None, 1.2565)
    compare.assert_same_generation("x", same, same, None, torch.bfloat16, None, 0.001)


def test_only_random_weights_may_have_a_noise_floor_that_takes_the_power_away():
    """A tiny or real checkpoint whose logits move this much with the batch is broken: a failure, not a skip."""
    assert compare.check_noise_floor("synthetic-mamba", "synthetic", 1.2565) == 1.2565
    assert compare.check_noise_floor("tiny-mamba", "tiny", 2e-7) == 2e-7
    for source in ("tiny", "pretrained"):
        with pytest.raises(compare.Mismatch, match="a batch-dependence bug, a broken kernel or an unstable"):
            compare.check_noise_floor(f"{source}-mamba", source, 0.06)


def test_the_plugin_reports_a_powerless_comparison_as_a_skip_with_its_reason():
    item = types.SimpleNamespace(nodeid="tests/test_x.py::test_x[synthetic-mamba]")
    hook = plugin.pytest_runtest_call(item)
    next(hook)
    with pytest.raises(pytest.skip.Exception, match=r"test_x.py::test_x\[synthetic-mamba\]: no comparison has power"):
        hook.throw(compare.Powerless("no comparison has power here"))
    hook = plugin.pytest_runtest_call(item)
    next(hook)
    with pytest.raises(compare.Mismatch):  # a real failure stays a failure
        hook.throw(compare.Mismatch("tokens differ"))


# --- a stand-in for mamba-ssm (CUDA only) --------------------------------------------------------------------------

@dataclass
class _MambaConfig:  # mamba_ssm.models.config_mamba.MambaConfig's fields
    d_model: int = 2560
    d_intermediate: int = 0
    n_layer: int = 64
    vocab_size: int = 50277
    ssm_cfg: dict = field(default_factory=dict)
    attn_layer_idx: list = field(default_factory=list)
    attn_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True


def _fake_mamba_ssm(hf_model):
    """Modules ``mamba_ssm.models.{config_mamba,mixer_seq_simple}`` and ``mamba_ssm.utils.generation``: a model
    with mamba-ssm's parameter names (``backbone.embedding``, per layer ``mixer.{in_proj, conv1d, x_proj,
    dt_proj, A_log, D, out_proj}`` and ``norm``, ``backbone.norm_f``, ``lm_head``) computing its logits through
    ``hf_model``'s code with its own tensors."""

    class Mixer(nn.Module):
        def __init__(self, d, cfg):
            super().__init__()
            inner, rank, state = cfg["expand"] * d, cfg["dt_rank"], cfg["d_state"]
            self.in_proj = nn.Linear(d, 2 * inner, bias=cfg["bias"])
            self.conv1d = nn.Conv1d(inner, inner, cfg["d_conv"], groups=inner, padding=cfg["d_conv"] - 1,
                                    bias=cfg["conv_bias"])
            self.x_proj = nn.Linear(inner, rank + 2 * state, bias=False)
            self.dt_proj = nn.Linear(rank, inner, bias=True)
            self.A_log = nn.Parameter(torch.empty(inner, state))
            self.D = nn.Parameter(torch.empty(inner))
            self.out_proj = nn.Linear(inner, d, bias=cfg["bias"])

    class Block(nn.Module):
        def __init__(self, d, cfg):
            super().__init__()
            self.mixer, self.norm = Mixer(d, cfg), nn.Module()
            self.norm.weight = nn.Parameter(torch.empty(d))

    class MambaLMHeadModel(nn.Module):
        def __init__(self, config, initializer_cfg=None, device=None, dtype=None):
            super().__init__()
            cfg = dict(config.ssm_cfg)
            assert cfg.pop("layer") == "Mamba1"
            self.config = config
            self.backbone = nn.Module()
            self.backbone.embedding = nn.Embedding(config.vocab_size, config.d_model)
            self.backbone.layers = nn.ModuleList(Block(config.d_model, cfg) for _ in range(config.n_layer))
            self.backbone.norm_f = nn.Module()
            self.backbone.norm_f.weight = nn.Parameter(torch.empty(config.d_model))
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

        def tie_weights(self):
            self.lm_head.weight = self.backbone.embedding.weight

        def _logits(self, ids):
            renamed = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in self.named_parameters()}
            return torch.func.functional_call(hf_model, renamed, (ids,), {"use_cache": False}).logits

        def forward(self, input_ids, inference_params=None, num_last_tokens=0, position_ids=None):
            if inference_params is not None:
                inference_params.history = input_ids
            logits = self._logits(input_ids)
            return types.SimpleNamespace(logits=logits[:, -num_last_tokens:] if num_last_tokens else logits)

    class InferenceParams:
        def __init__(self):
            self.seqlen_offset, self.key_value_memory_dict, self.history = 0, {}, None

        def reset(self, max_seqlen, max_batch_size):
            self.seqlen_offset, self.max_seqlen = 0, max_seqlen

    def update_graph_cache(model, cache, batch_size, seqlen_og, max_seqlen, **kwargs):
        # As mamba-ssm's: a new capture (and fresh state) only for a larger batch or a longer maximum length.
        if cache is None or batch_size > cache.max_batch_size or max_seqlen > cache.max_seqlen:
            cache = types.SimpleNamespace(inference_params=InferenceParams(), max_batch_size=batch_size,
                                          max_seqlen=max_seqlen, captures=(cache.captures if cache else 0) + 1)

        def run(input_ids, position_ids, seqlen):  # the graph's step: one token in, its logits out
            params = cache.inference_params
            assert seqlen == params.seqlen_offset == params.history.shape[1] and position_ids[0, 0] == seqlen
            params.history = torch.cat([params.history, input_ids], dim=1)
            return model._logits(params.history)[:, -1:]

        cache.run = run
        cache.inference_params.seqlen_offset = 0
        return cache

    root = types.ModuleType("mamba_ssm")
    modules = {"mamba_ssm": root, "mamba_ssm.models": types.ModuleType("mamba_ssm.models"),
               "mamba_ssm.models.config_mamba": types.SimpleNamespace(MambaConfig=_MambaConfig),
               "mamba_ssm.models.mixer_seq_simple": types.SimpleNamespace(MambaLMHeadModel=MambaLMHeadModel),
               "mamba_ssm.utils": types.ModuleType("mamba_ssm.utils"),
               "mamba_ssm.utils.generation": types.SimpleNamespace(update_graph_cache=update_graph_cache)}
    return modules


@pytest.fixture(scope="module")
def tiny_mamba():
    spec = next(s for s in resolve_model_set("tiny", archs=["mamba"]) if s.arch.key == "mamba")
    return load(spec, torch.device("cpu"), torch.float32)


def test_native_model_takes_transformers_tensors_and_decodes_their_greedy_tokens(tiny_mamba, monkeypatch):
    lm = tiny_mamba
    for name, module in _fake_mamba_ssm(lm.model).items():
        monkeypatch.setitem(sys.modules, name, module)
    decoder = native.NativeDecoder(lm.model, lm.spec.arch)
    ids = torch.randint(5, lm.model.config.vocab_size - 5, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=7, min_new_tokens=7,
                                do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    for _ in range(2):  # the second call reuses the captured graph
        marks = []  # the clock's: one per token, the first once the prefill's logits exist

        def mark(marks=marks):
            marks.append(decoder.cache.inference_params.history.shape[1])  # positions read so far

        tokens = decoder.generate(ids, 7, on_token=mark)
        assert tokens.shape == (2, 7) and torch.equal(tokens, ref[:, 9:]), (tokens, ref[:, 9:])
        assert marks == list(range(9, 16)), marks
    assert decoder.cache.captures == 1
    assert torch.equal(decoder.generate(ids, 9)[:, :7], ref[:, 9:]) and decoder.cache.captures == 2  # longer
    with pytest.raises(ValueError, match="new_tokens must be >= 1"):
        decoder.generate(ids, 0)
    # Mapping: one tensor per transformers' parameter, shared; drop the embedding's rename and it is refused.
    assert sum(p.numel() for p in decoder.model.parameters()) == sum(p.numel() for p in lm.model.parameters())
    broken = native.NativeMap(lm.spec.arch.native.config)
    with pytest.raises(ValueError, match="missing .*backbone.embedding.weight"):
        native.native_model(lm.model, types.SimpleNamespace(native=broken))


def test_native_backend_through_the_harness_records_its_state_and_is_dropped_between_points(tiny_mamba,
                                                                                           monkeypatch):
    """The benchmark call of the native backend (backends/native.py's call -> native_decoder): its clock marks a
    token each, its state's bytes are recorded, and release_backend_state frees the decoder before the next
    point. (Availability is CUDA's; here the fake stands in.)"""
    from ssmbench import backends, bench

    lm = tiny_mamba
    for name, module in _fake_mamba_ssm(lm.model).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(native, "unavailable", lambda arch, device: None)
    runs = bench.Runs()
    ids = torch.randint(5, lm.model.config.vocab_size - 5, (1, 6), generator=torch.Generator().manual_seed(1))
    call = backends.get("native").call(lm, ids, 5, runs, energy=False)
    decoder = native.native_decoder(lm)
    decoder_state = [torch.zeros(3, 4), torch.zeros(2)]
    monkeypatch.setattr(native.NativeDecoder, "state_tensors", lambda self: decoder_state)
    call()
    assert runs.new_tokens == [5] and len(runs.intervals[0]) == 5 and runs.cache_bytes == 14 * 4
    assert native.native_decoder(lm) is decoder  # one per model ...
    bench.release_backend_state(lm, "eager")
    assert native.native_decoder(lm) is not decoder  # ... dropped before the next point


def test_native_mapping_refuses_what_mamba_ssm_cannot_say_and_a_copied_tensor(tiny_mamba, monkeypatch):
    lm = tiny_mamba
    config = lm.model.config
    odd = types.SimpleNamespace(**{**config.to_dict(), "layer_norm_epsilon": 1e-6})
    with pytest.raises(ValueError, match="epsilon at 1e-5.* 1e-06"):
        ARCHS["mamba"].native.config(odd)
    for name, module in _fake_mamba_ssm(lm.model).items():
        monkeypatch.setitem(sys.modules, name, module)
    model = native.native_model(lm.model, lm.spec.arch)
    model.backbone.layers[0].mixer.D = nn.Parameter(model.backbone.layers[0].mixer.D.detach().clone())
    with pytest.raises(ValueError, match=r"not taken from the transformers model: backbone.layers.0.mixer.D"):
        native.check_shared(lm.model, model)


def test_native_backend_says_why_it_cannot_run():
    mamba, phi = ARCHS["mamba"], ARCHS["phi"]
    assert "no mapping" in native.unavailable(phi, torch.device("cuda"))
    assert "needs a GPU" in native.unavailable(mamba, torch.device("cpu"))
    if "mamba_ssm" not in sys.modules:
        try:
            import mamba_ssm  # noqa: F401
        except ImportError:
            assert "mamba-ssm is not importable here" in native.unavailable(mamba, torch.device("cuda"))
