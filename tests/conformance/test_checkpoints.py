"""Checkpoints and dtypes: a save/load round trip is lossless, a requested dtype is honoured, and lower
precision agrees with float32 where it should (and says so plainly where it is known not to)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from ssmbench import impl
from ssmbench.compare import assert_logits_close, assert_same_generation
from ssmbench.compat import dtype_kwargs, kept_in_float32
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance

NEW = 12


def _config_fields(model) -> dict:
    """The configuration as saved (JSON types: a tuple and its reloaded list compare equal), without the private
    fields transformers sets while loading (4.46-4.51: ``_attn_implementation_autoset``) or the path."""
    return {k: v for k, v in json.loads(model.config.to_json_string(use_diff=False)).items()
            if not k.startswith("_")}


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """A tensor's values as raw bytes (any shape or strides): bit for bit, -0.0 against 0.0 and NaN included."""
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


@pytest.mark.heavy
def test_save_load_roundtrip_is_exact(lm, tmp_path):
    enc = lm.encode(PROMPTS[:2])
    before = lm.logits(enc["input_ids"], attention_mask=enc["attention_mask"])
    lm.model.save_pretrained(tmp_path)
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True, output_loading_info=True,
                                                          **dtype_kwargs(lm.dtype))
    # Moved first: the reference path is forced only for a model that stays off CUDA (forced while still on the
    # CPU, the reloaded model ran transformers' reference loop on the GPU against the kernels of the original).
    reloaded = on_cpu_reference(lm, reloaded.to(lm.device).eval())
    # Lossless: every tensor in the file (a missing one is re-initialised, for some tensors to the same values),
    # back bit for bit in its dtype, and the configuration field for field.
    gaps = {k: sorted(info.get(k) or ()) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not any(gaps.values()), f"{lm.name}: save/load lost or mismatched tensors: {gaps}"
    saved, back = lm.model.state_dict(), reloaded.state_dict()
    assert saved.keys() == back.keys(), (
        f"{lm.name}: tensors lost or added by save/load: {sorted(saved.keys() ^ back.keys())[:5]}")
    changed = [k for k in saved if saved[k].dtype != back[k].dtype or saved[k].shape != back[k].shape
               or not torch.equal(_bytes(saved[k]), _bytes(back[k]))]
    assert not changed, f"{lm.name}: tensors changed by save/load: {changed[:5]}"
    config, config_back = _config_fields(lm.model), _config_fields(reloaded)
    fields = sorted(k for k in config.keys() | config_back.keys()
                    if config.get(k, "<missing>") != config_back.get(k, "<missing>"))
    assert not fields, f"{lm.name}: configuration changed by save/load: " + ", ".join(
        f"{k}: {config.get(k, '<missing>')!r} -> {config_back.get(k, '<missing>')!r}" for k in fields)
    with torch.no_grad():
        after = reloaded(**enc).logits
    del reloaded
    if lm.device.type == "cpu":
        diff = (before - after).abs().max().item()
        assert torch.equal(before, after), f"{lm.name}: logits changed after save/load; max abs diff {diff:.3g}"
    else:
        # Same weights, same configuration: on a GPU the reloaded model may still compute in another order
        # (cuBLAS picks its algorithm per call and workspace; on the H200 tiny-mamba's float32 logits moved by
        # 3.1e-06). So there the logits are held to the dtype's tolerance widened by the model's noise floor, as
        # every other logits comparison of the suite (a floor that would accept anything skips the check).
        assert_logits_close(f"{lm.name}: logits after save/load", after, before, lm.dtype, lm.noise_floor)


# Synthetic models have no checkpoint to reload in another dtype: the checks that reload one run on the tiny and
# the pretrained models (declared by their source marks, not skipped inside).
FROM_A_CHECKPOINT = pytest.mark.source("tiny", "pretrained")


def _load_as(lm, dtype):
    return on_cpu_reference(lm, AutoModelForCausalLM.from_pretrained(
        lm.spec.location, local_files_only=True, **dtype_kwargs(dtype)).to(lm.device).eval())


def on_cpu_reference(lm, model):
    """A model built here, not by the suite's loader: off CUDA, its mixers on the reference path as the loader
    does (transformers' wrappers would call installed CUDA kernels for CPU tensors)."""
    if lm.spec.arch.kernels is not None:
        impl.force_reference_off_cuda(model, lm.spec.arch)
    return model


@FROM_A_CHECKPOINT
@pytest.mark.heavy
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_requested_dtype_is_loaded(lm, dtype):
    model = _load_as(lm, dtype)
    dtypes = {p.dtype for p in model.parameters()}
    # A model class may declare parameters that stay in float32 (4.x Mamba: A_log); everything else follows.
    assert dtype in dtypes and dtypes <= {dtype, torch.float32}, f"{lm.name}: asked {dtype}, got {dtypes}"
    big = [n for n, p in model.named_parameters() if p.dtype != dtype and p.dim() > 1 and not kept_in_float32(model, n)]
    assert not big, f"{lm.name}: weight matrices not in {dtype}: {big[:5]}"


@FROM_A_CHECKPOINT
@pytest.mark.heavy
def test_bfloat16_generation_agrees_with_float32(lm):
    ref_model = lm.model if lm.dtype == torch.float32 else _load_as(lm, torch.float32)
    low = _load_as(lm, torch.bfloat16)
    enc = lm.encode(PROMPTS[0])
    common = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id,
                  return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        ref = ref_model.generate(**enc, **common)
        got = low.generate(**enc, **common)
    plen = enc["input_ids"].shape[1]
    assert_same_generation(f"{lm.name}: bfloat16 vs float32 greedy", got.sequences[0, plen:],
                           ref.sequences[0, plen:], [s[0] for s in ref.logits], torch.bfloat16, lm.tokenizer.decode)


@FROM_A_CHECKPOINT
@pytest.mark.heavy
def test_float16_logits_are_finite(lm):
    """phi-2's real weights overflow in float16 attention (NaN logits): on the pretrained set that is
    reported as an expected failure naming the cause, never as a crash or a silent pass."""
    model = lm.model if lm.dtype == torch.float16 else _load_as(lm, torch.float16)
    enc = lm.encode(PROMPTS[0])
    with torch.no_grad():
        logits = model(**enc).logits
    finite = bool(torch.isfinite(logits).all())
    if not finite and lm.spec.source == "pretrained" and lm.spec.arch.key == "phi":
        pytest.xfail(f"{lm.name}: float16 logits are not finite: phi-2's attention overflows in float16 "
                     "(known; use bfloat16 or float32)")
    assert finite, f"{lm.name}: float16 logits contain {int((~torch.isfinite(logits)).sum())} non-finite values"
