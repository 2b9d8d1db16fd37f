"""Differences between the transformers versions the suite supports, handled in one place."""

from __future__ import annotations

from typing import Any

import torch
import transformers
from packaging.version import Version

TRANSFORMERS_VERSION = Version(transformers.__version__)
# transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name warns, later fails).
_DTYPE_KW = "dtype" if TRANSFORMERS_VERSION >= Version("4.56") else "torch_dtype"


def dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """The keyword that asks from_pretrained / from_config for a parameter dtype."""
    return {_DTYPE_KW: dtype}


def mamba_ssm_state_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """The dtype transformers keeps Mamba's SSM state in. 4.x's MambaCache used the model dtype; 5.x keeps
    the scan's last state as computed, in float32 (measured: 72 bytes per channel and layer in a bfloat16
    model on 5.17 and 5.24, not the 40 a bfloat16 state would take)."""
    return torch.float32 if TRANSFORMERS_VERSION.major >= 5 else model_dtype


def kept_in_float32(model, name: str) -> bool:
    """Parameters a model class declares to stay in float32 whatever dtype is asked for (transformers 4.x
    keeps Mamba's A_log so; 5.x does not)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    return any(part in name.split(".") for part in keep)


def static_cache_compile_offered(model) -> bool:
    """Whether generate(cache_implementation="static") compiles this model's decode step. transformers 4.x
    declares it per class (``_supports_static_cache``; False for Mamba, whose generate() then silently stays
    eager); 5.x dropped the flag and compiles every model's decode with a static cache (Mamba included: its
    state is fixed-size) on a GPU."""
    flag = getattr(model, "_supports_static_cache", None)
    return True if flag is None else bool(flag)


def find_cache(output: Any) -> Any:
    """The cache object a forward pass returned: past_key_values (attention), cache_params (Mamba,
    transformers < 5.2x) or cache (Mamba, newer)."""
    for key in ("cache", "past_key_values", "cache_params"):
        value = getattr(output, key, None)
        if value is not None:
            return value
    raise LookupError(f"no cache in {type(output).__name__}; fields: {list(output.keys())}")


def prefill_cache(model, ids: torch.Tensor, pad_token_id: int | None) -> Any:
    """The cache after a forward over ``ids``; where forward returns none unless handed one (Bamba before 5.x),
    the one generate() builds, holding ``ids`` once a single new token is generated. None when neither returns
    one (a LookupError would be confused with the IndexError a forward can raise: IndexError is a LookupError)."""
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)  # outside the try: an IndexError is a LookupError too
        try:
            return find_cache(out)
        except LookupError:
            pass
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, min_new_tokens=1,
                             do_sample=False, return_dict_in_generate=True, pad_token_id=pad_token_id)
    try:
        return find_cache(out)
    except LookupError:
        return None


# Behaviour that really differs between supported transformers versions: the tests stay, and where a
# difference holds they are marked strict xfail with this text (so a fix upstream shows up as XPASS). Each names
# the releases it was seen on, and where it was fine: found by running them, not guessed.
# key -> (architectures it affects, predicate on the installed version, what differs[, predicate on the model's
# config: the difference shows only in some configurations])
KNOWN_DIFFERENCES = {
    "mamba-decode-after-1-token-prompt": (
        ("mamba", "falcon_mamba"), lambda v: v < Version("5.4"),
        "transformers < 5.4 (seen here on 4.46.3, 4.52.4 and 5.0.0; fine on 5.17.0 and 5.24.0; issue #16's run "
        "of 28 releases: wrong on 4.46.0 ... 5.3.0, rewritten in 5.4.0): Mamba's (and FalconMamba's, the same "
        "mixer) cached decode after a 1-token prompt diverges from the full forward pass (the conv state's "
        "clamped cache_position writes the new token into the wrong slot); no upstream issue found",
    ),
    "mamba-a-log-dtype": (
        ("mamba", "falcon_mamba"), lambda v: v < Version("5.3"),
        "transformers < 5.3 (seen here on 4.46.3, 4.52.4 and 5.0.0; fine on 5.17.0 and 5.24.0; issue #16's run: "
        "4.46 ... 5.2): Mamba's and FalconMamba's A_log stays float32 when from_pretrained is asked for bfloat16 "
        "or float16, deliberately (mamba_ssm keeps it so)",
    ),
    "mamba2-grouped-ssd": (
        ("mamba2",), lambda v: v < Version("4.52"),
        "transformers < 4.52 (wrong on 4.46.3, 4.47.1, 4.48.3 and 4.51.3; right on 4.53.3 and every later release "
        "run): Mamba-2's torch path expands each group's B and C to its heads tiled (.repeat), not group by group, "
        "so with n_groups > 1 its chunked prefill is wrong: huggingface/transformers#37533",
        lambda config: getattr(config, "n_groups", 1) > 1,
    ),
    "mamba2-left-padding": (
        ("mamba2",), lambda v: v < Version("4.48"),
        "transformers < 4.48 (wrong on 4.46.3 and 4.47.1; right on 4.48.3 and every later release run): a "
        "left-padded Mamba-2 batch generates differently from each prompt alone; no upstream issue found",
    ),
    "mamba2-grouped-norm": (
        ("mamba2",), lambda v: v < Version("5.23"),
        "transformers < 5.23 (the all-minors sweep: wrong on 4.52.4 ... 5.22.2, right from 5.23.0): Mamba-2's "
        "gated RMSNorm normalises all groups together, not each group as mamba_ssm does (n_groups > 1): "
        "huggingface/transformers#40861",
        lambda config: getattr(config, "n_groups", 1) > 1,
    ),
    "bamba-grouped-norm": (
        ("bamba",), lambda v: v < Version("5.23"),
        "transformers < 5.23 (the all-minors sweep: wrong on 4.52.4 ... 5.22.2, right from 5.23.0): Bamba's "
        "Mamba-2 mixer has Mamba-2's gated RMSNorm over all groups at once (mamba_n_groups > 1): "
        "huggingface/transformers#40861",
        lambda config: getattr(config, "mamba_n_groups", 1) > 1,
    ),
    "mamba2-tied-save": (
        ("mamba2",), lambda v: v < Version("5.0"),
        "transformers < 5.0 (seen on 4.46.3 and 4.52.4; fine on 5.0.0, 5.17.0, 5.24.0; 4.53-4.57 unchecked): "
        "Mamba2ForCausalLM declares no tied weights (_tied_weights_keys = []), so save_pretrained refuses a tied "
        "model's shared embedding and lm_head (mamba2-2.7b is tied); no upstream issue found",
        lambda config: bool(getattr(config, "tie_word_embeddings", False)),
    ),
    "mamba2-1-token-prompt": (
        ("mamba2",), lambda v: v < Version("4.48"),
        "transformers < 4.48 (raises on 4.46.3 and 4.47.1; fine on 4.48.3 and every later release run): Mamba-2's "
        "forward with use_cache on a 1-token prompt takes the conv state's decode branch and raises IndexError; "
        "no upstream issue found",
    ),
    "bamba-cached-decode": (
        ("bamba",), lambda v: v < Version("4.52"),
        "transformers < 4.52 (wrong on 4.48.3 and 4.51.3; right on 4.52.4 and every later release run): Bamba's "
        "cached decode steps drift from the full forward pass (relative error 0.1 on the tiny model); no upstream "
        "issue found",
    ),
    "bamba-partial-rotary": (
        ("bamba",), lambda v: Version("5.0") <= v < Version("5.15"),
        "transformers 5.0 ... 5.14 (the all-minors sweep: wrong on 5.0.0 ... 5.14.1; right on 4.57.6 and from "
        "5.15.1): Bamba's rotary embedding ignores partial_rotary_factor (RoPE over the whole head, not half of "
        "it), dropped in the 5.x RoPE refactor and restored by huggingface/transformers#46912",
    ),
    "beam-search-cache-not-reordered": (
        ("mamba", "mamba2"), lambda v: v < Version("5.13"),
        "transformers < 5.13 (wrong on every release run from 4.46.3 to 5.12.1; right on 5.13.1 and later): beam "
        "search reordered only a cache named past_key_values, never Mamba's or Mamba-2's, so the beams continued "
        "from other beams' states: huggingface/transformers#46612, fixed by #46819",
    ),
    "bamba-beam-search": (
        ("bamba",), lambda v: v < Version("4.52"),
        "transformers < 4.52 (wrong on 4.48.3 and 4.51.3; right on 4.52.4 and later): Bamba's beam search with "
        "the cache diverges from beam search recomputed without it after a few tokens; no upstream issue found",
    ),
    "mamba2-padded-batch-of-one": (
        ("mamba2",), lambda v: v < Version("5.15"),
        "transformers < 5.15 (the all-minors sweep: wrong on 4.46.3 ... 5.14.1, right from 5.15.1): "
        "Mamba-2 zeroes padded positions only when the batch has more than one row, so a padded batch of one "
        "reads its pads (first-step logits 0.013-0.026 off): huggingface/transformers#46773",
    ),
    "bamba-padded-batch-of-one": (
        ("bamba",), lambda v: v < Version("5.15"),
        "transformers < 5.15 (the all-minors sweep: wrong on 4.48.3 ... 5.14.1, right from 5.15.1): Bamba's Mamba-2 "
        "mixer, a copy of Mamba-2's, zeroes padded positions only when the batch has more than one row, so a padded "
        "batch of one reads its pads (first-step logits 0.5 % off behind masked pads of other content): "
        "huggingface/transformers#46773",
    ),
    "bamba-cache-4.54": (
        ("bamba",), lambda v: Version("4.54") <= v < Version("4.55"),
        "transformers 4.54 (the all-minors sweep: wrong on 4.54.1, right on 4.53.3 and 4.55.4): Bamba's hybrid cache, "
        "made a Cache subclass in 4.54 and reverted in 4.55, breaks cached decoding -- each decode step's logits 52 % "
        "off the full forward pass, so cached greedy, beam search with the cache and the tiny model's generations "
        "(18 distinct tokens over 4 prompts) go wrong; repro: generate() with and without use_cache on any Bamba",
    ),
    "right-padded-prefill-cache": (
        ("mamba", "mamba2", "falcon_mamba"), lambda v: True,
        "every release, 4.46.3 ... 5.25.0 (the all-minors sweep): a right-padded prefill leaves a Mamba-family "
        "cache as if the pad tokens had been read (zero conv state, decayed SSM state): "
        "huggingface/transformers#48256, open",
    ),
    "chunked-prefill-mamba1": (
        ("mamba", "falcon_mamba"), lambda v: True,
        "every release, 4.46.3 ... 5.25.0 (the all-minors sweep): Mamba's (and FalconMamba's) mixer runs a "
        "multi-token input through a cache as a fresh prefill, ignoring the cached conv and SSM state (5.0.0: "
        "raises IndexError instead); no upstream issue found (Mamba-2's was huggingface/transformers#46032)",
    ),
    "chunked-prefill-mamba2": (
        ("mamba2",), lambda v: v < Version("5.13"),
        "transformers < 5.13 (wrong on every release run from 4.46.3 to 5.12.1; right on 5.13.1 and later): "
        "Mamba-2's mixer took a multi-token input with a cache as one decode step: huggingface/transformers#46032, "
        "fixed by #46084",
    ),
    "chunked-prefill-bamba": (
        ("bamba",), lambda v: v < Version("5.13"),
        "transformers < 5.13 (wrong on every release run from 4.48.3 to 5.12.1; right on 5.13.1 and later): Bamba's "
        "Mamba-2 mixer started a multi-token input with a cache from a zero conv context and state: fixed by "
        "huggingface/transformers#46741",
    ),
    # Continuing generate() from the cache it returned (4.x returns none for these classes: the tests skip).
    "continue-wrong-mamba": (
        ("mamba",), lambda v: Version("5.0") <= v < Version("5.25"),
        "5.0 ... 5.24 (every 5.x release run from 5.0.0 to 5.24.0; right on 5.25.0): generate() handed the cache it "
        "returned for Mamba continues "
        "differently from one call -- on 5.24.0 a zeroed copy of the cache gives exactly the no-cache result, the "
        "real one 0.5 % off: the whole sequence is fed again on top of the cached state (tokens wrong too on "
        "5.0.0 and 5.2.0); no upstream issue found",
    ),
    "continue-wrong-mamba2": (
        ("mamba2",), lambda v: Version("5.4") <= v < Version("5.25"),
        "5.4 ... 5.24 (the all-minors sweep: wrong on 5.4.0 ... 5.24.0; right on 5.25.0): generate() handed the cache "
        "it returned for Mamba-2 continues differently from one call (first logits 50 % off on 5.4.0, tokens wrong on "
        "5.5.4 ... 5.12.1, first logits 2 % off later); no upstream issue found",
    ),
    "continue-ignores-cache-mamba2": (
        ("mamba2",), lambda v: Version("5.0") <= v < Version("5.4"),
        "5.0 ... 5.3 (the all-minors sweep: 5.0.0, 5.1.0, 5.2.0 and 5.3.0): generate() handed the cache it returned "
        "for Mamba-2 continues exactly as from a zeroed copy of it -- the cache is not used (the continuation is "
        "right, nothing is saved); no upstream issue found",
    ),
    "continue-raises-5.4": (
        ("mamba", "mamba2", "falcon_mamba"), lambda v: Version("5.4") <= v < Version("5.5"),
        "transformers 5.4 (the all-minors sweep: 5.4.0 only; fine on 5.3.0 and 5.5.4): generate() continuing from a "
        "Mamba-family cache it returned raises in the conv state's update (\"The expanded size of the tensor (1) must "
        "match the existing size (30) at non-singleton dimension 2\"); no upstream issue found",
    ),
    "continue-wrong-falcon_mamba": (
        ("falcon_mamba",), lambda v: Version("5.0") <= v < Version("5.25"),
        "5.0 ... 5.24 (every 5.x release run from 5.0.0 to 5.24.0; right on 5.25.0): generate() handed the cache it "
        "returned for FalconMamba "
        "continues differently from one call (tokens wrong on 5.0.0 ... 5.14.1, first logits 2 % off later); no "
        "upstream issue found",
    ),
}


def known_difference(key: str, model) -> str | None:
    """The reason text when difference ``key`` holds for this version and a loaded model (``LoadedModel``: its
    architecture and configuration), else None."""
    archs, holds, reason, *config_holds = KNOWN_DIFFERENCES[key]
    applies = model.spec.arch.key in archs and holds(TRANSFORMERS_VERSION)
    return reason if applies and all(check(model.model.config) for check in config_holds) else None


def known_differences(model, *keys: str) -> str | None:
    """The reasons of those of ``keys`` that hold here for ``model``, joined; None when none does."""
    reasons = [r for r in (known_difference(k, model) for k in keys) if r]
    return "; ".join(reasons) or None
