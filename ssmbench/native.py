"""The authors' implementation as a decode backend (``native``): mamba-ssm's ``MambaLMHeadModel`` on the very
tensors transformers loaded -- built on the meta device and handed them (no copy, no second random
initialisation) -- decoding greedily with mamba-ssm's own CUDA graph of the one-token step
(``mamba_ssm.utils.generation.update_graph_cache`` and its replay, the machinery of ``generate(cg=True)``).

Its loop is mamba-ssm's ``decode()`` (prefill through the model's forward, then one graph replay per token, the
argmax feeding the next step) with a CUDA event after each token for the suite's clock and no synchronize;
calibration times the authors' ``generate(cg=True)`` itself against it. The native model shares the cache
object ``generate(cg=True)`` keeps (``model._decoding_cache``), so both replay one captured graph.

Where mamba-ssm is not importable, the device is not CUDA, or the architecture has no mapping (``Arch.native``:
Mamba-1 only), ``unavailable`` says why and the backend is skipped with that reason.
"""

from __future__ import annotations

import importlib
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .point import NATIVE  # noqa: E402,F401  (what the native backend's points record as their decode path)


@dataclass(frozen=True)
class NativeMap:
    """How an architecture's transformers model becomes mamba-ssm's: its ``MambaConfig`` fields from the
    transformers config, and the state-dict key renames (transformers' name -> mamba-ssm's)."""

    config: Callable[[Any], dict[str, Any]]
    renames: tuple[tuple[str, str], ...] = ()
    module: str = "mamba_ssm.models.mixer_seq_simple"  # where MambaLMHeadModel lives

    def state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in state.items():
            for old, new in self.renames:
                key = key.replace(old, new)
            out[key] = value
        return out


def unavailable(arch: Any, device: torch.device) -> str | None:
    """Why the native backend cannot run here (None: it can)."""
    if arch.native is None:
        return (f"the native backend is mamba-ssm's own model, mapped for Mamba-1 only; {arch.key} has no "
                "mapping (Arch.native)")
    if device.type != "cuda":
        return f"the native backend needs a GPU (mamba-ssm's kernels and CUDA graphs are CUDA only); device {device}"
    try:
        importlib.import_module(arch.native.module)
        importlib.import_module("mamba_ssm.utils.generation")
    except ImportError as exc:  # also mamba-ssm built against another torch (an undefined symbol)
        return f"mamba-ssm is not importable here ({type(exc).__name__}: {exc}); pip install mamba-ssm causal-conv1d"
    return None


def native_model(hf_model: Any, arch: Any) -> Any:
    """mamba-ssm's ``MambaLMHeadModel`` holding ``hf_model``'s tensors themselves (``assign=True`` from the meta
    device): every parameter is one of transformers', none is copied or initialised."""
    module = importlib.import_module(arch.native.module)
    from mamba_ssm.models.config_mamba import MambaConfig

    fields = arch.native.config(hf_model.config)
    dtype = next(hf_model.parameters()).dtype
    with torch.device("meta"):
        native = module.MambaLMHeadModel(MambaConfig(**fields), dtype=dtype)
    state = arch.native.state_dict(hf_model.state_dict())
    missing, unexpected = native.load_state_dict(state, strict=False, assign=True)
    tied = fields.get("tie_embeddings", False)
    if tied:
        native.tie_weights()
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{type(hf_model).__name__} -> MambaLMHeadModel: {len(missing)} missing "
                         f"({', '.join(missing[:4])}), {len(unexpected)} unexpected ({', '.join(unexpected[:4])})")
    check_shared(hf_model, native)
    return native.eval()


def check_shared(hf_model: Any, native: Any) -> None:
    """Every tensor of the native model is one of transformers' (same storage): nothing left on meta, nothing
    copied -- the native figures are of the same weights, and cost no second copy of them."""
    theirs = {t.data_ptr() for t in list(hf_model.parameters()) + list(hf_model.buffers())}
    own = [(name, t) for name, t in list(native.named_parameters()) + list(native.named_buffers())]
    stray = [name for name, t in own if t.is_meta or t.data_ptr() not in theirs]
    if stray:
        raise ValueError(f"MambaLMHeadModel tensors not taken from the transformers model: {', '.join(stray[:4])}"
                         f"{' ...' if len(stray) > 4 else ''} ({len(stray)} of {len(own)})")


class NativeDecoder:
    """Greedy decoding with mamba-ssm's CUDA graph on a transformers model's weights."""

    def __init__(self, hf_model: Any, arch: Any):
        self.model = native_model(hf_model, arch)

    @property
    def cache(self) -> Any:
        """mamba-ssm's ``DecodingCGCache`` (the captured graphs and their inference state), once a call made it."""
        return getattr(self.model, "_decoding_cache", None)

    def state_tensors(self) -> list[torch.Tensor]:
        """The decode state the graphs update in place (conv and SSM state per layer)."""
        cache = self.cache
        if cache is None or cache.inference_params is None:
            return []
        return [t for pair in cache.inference_params.key_value_memory_dict.values() for t in pair]

    @torch.inference_mode()
    def generate(self, ids: torch.Tensor, new_tokens: int, on_token: Callable[[], None] | None = None
                 ) -> torch.Tensor:
        """Exactly ``new_tokens`` greedy tokens after ``ids`` ([batch, new_tokens]): mamba-ssm's ``decode``
        loop (``cg=True``, top-k 1), ``on_token`` after each token's logits are enqueued."""
        from mamba_ssm.utils.generation import update_graph_cache

        if new_tokens < 1:
            raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
        batch, length = ids.shape
        max_length = length + new_tokens
        model = self.model
        model._decoding_cache = update_graph_cache(model, self.cache, batch, length, max_length)
        params = model._decoding_cache.inference_params
        params.reset(max_length, batch)
        logits = model(ids, inference_params=params, num_last_tokens=1).logits.squeeze(dim=1)
        if on_token is not None:
            on_token()
        tokens = [logits.argmax(dim=-1)]
        params.seqlen_offset += length
        for _ in range(new_tokens - 1):
            position = torch.full((batch, 1), params.seqlen_offset, dtype=torch.long, device=ids.device)
            logits = model._decoding_cache.run(tokens[-1].unsqueeze(1), position, params.seqlen_offset).squeeze(dim=1)
            if on_token is not None:
                on_token()
            tokens.append(logits.argmax(dim=-1))
            params.seqlen_offset += 1
        return torch.stack(tokens, dim=1)

    @torch.inference_mode()
    def authors_generate(self, ids: torch.Tensor, new_tokens: int, **kwargs) -> Any:
        """The authors' own ``generate(cg=True)`` for the same tokens (what calibration times plainly)."""
        return self.model.generate(ids, max_length=ids.shape[1] + new_tokens, cg=True, **kwargs)

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Every position's logits of a plain forward (no cache)."""
        return self.model(ids).logits


_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def native_decoder(lm: Any) -> NativeDecoder:
    """One native decoder per loaded model (its graphs serve every call of a point and calibration after it);
    ``drop`` frees it before the next point."""
    if lm.model not in _DECODERS:
        _DECODERS[lm.model] = NativeDecoder(lm.model, lm.spec.arch)
    return _DECODERS[lm.model]


def drop(model: Any) -> None:
    _DECODERS.pop(model, None)
