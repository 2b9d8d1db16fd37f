"""Float64 references of attention: causal softmax attention (rotary: Phi's partial, grouped-query for Qwen2
and Llama, Llama 3's scaling; or none, as Nemotron-H's; a key multiplier, as Falcon-H1's; a QK norm, as LFM2's;
a scale, as Granite's) and Zamba2's shared attention with its per-use adapters."""

from __future__ import annotations

import math

import torch

from ._base import _linear, rms_norm


def rope_settings(config) -> tuple[float, float]:
    """(rope_theta, partial_rotary_factor) from a Phi config, old or new style."""
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    partial = params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0))
    return float(theta), float(partial)

def llama3_scaled(inv_freq: torch.Tensor, config) -> torch.Tensor:
    """Llama 3's rotary frequency scaling (rope_type "llama3"), where the config asks for it: wavelengths longer
    than the original context / low_freq_factor divided by ``factor``, shorter than original / high_freq_factor
    kept, those between interpolated smoothly. Any other scaling type is not modelled here: an error, not a
    silently different reference."""
    scaling = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind != "llama3":
        raise NotImplementedError(f"the float64 attention reference does not model rope_type {kind!r}")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return torch.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)

def attention(attn: torch.nn.Module, hidden: torch.Tensor, config, out_proj: str, rotary: bool = True,
              scale: float | None = None, qk_norm: tuple[torch.nn.Module, torch.nn.Module] | None = None,
              key_multiplier: float = 1.0) -> torch.Tensor:
    """Output of a causal self-attention block for ``hidden`` [batch, length, hidden] at positions 0..L-1:
    multi-head or grouped-query (query head h reads key/value head h // (heads / kv_heads)), rotary on the first
    ``partial_rotary_factor`` of each head in the GPT-NeoX half layout (``rotary=False``: no position encoding at
    all, as Nemotron-H's attention), then ``out_proj``. Scores are scaled by ``scale``, else 1/sqrt(head_dim)
    (Granite's attention_multiplier replaces it). ``qk_norm``: RMS norms (weight, ``variance_epsilon``) applied to
    each head's query and key before the rotation (LFM2's). ``key_multiplier`` scales the keys (Falcon-H1's muP)."""
    x = hidden.double()
    batch, length, _ = x.shape
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    theta, partial = rope_settings(config) if rotary else (1.0, 0.0)  # rot 0: no dimension rotated
    rot = int(head_dim * partial)

    def split(t):
        return t.view(batch, length, -1, head_dim).transpose(1, 2)  # [B, heads, L, D]

    q, v = split(_linear(x, attn.q_proj)), split(_linear(x, attn.v_proj))
    k = split(_linear(x, attn.k_proj) * key_multiplier)
    if qk_norm is not None:
        q, k = (rms_norm(t, norm) for t, norm in zip((q, k), qk_norm, strict=True))
    inv_freq = 1.0 / theta ** (torch.arange(0, rot, 2, dtype=torch.float64, device=x.device) / max(rot, 1))
    inv_freq = llama3_scaled(inv_freq, config) if rotary else inv_freq  # without rotary: empty, rotates nothing
    angles = torch.arange(length, dtype=torch.float64, device=x.device)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # [L, rot], GPT-NeoX half layout

    def rotate(t):
        r, rest = t[..., :rot], t[..., rot:]
        half = rot // 2
        rotated = torch.cat([-r[..., half:], r[..., :half]], dim=-1)
        return torch.cat([r * cos + rotated * sin, rest], dim=-1)

    q, k = rotate(q), rotate(k)
    group = heads // kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1 / math.sqrt(head_dim))
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(batch, length, heads * head_dim)
    return _linear(out, getattr(attn, out_proj))

def phi_attention(attn: torch.nn.Module, hidden: torch.Tensor, config) -> torch.Tensor:
    """Output of a Phi self-attention block (partial rotary, output projection ``dense``)."""
    return attention(attn, hidden, config, "dense")

def _adapter(adapters: torch.nn.ModuleList, use: int, what: str) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """The rank-r adapter (down, up) of one use of a shared block: entry ``use`` of its adapter list, which must be
    two bias-free linears (an Identity there means the block was built without this use's adapter)."""
    entry = adapters[use]
    linears = list(entry) if isinstance(entry, torch.nn.Sequential) else []
    if len(linears) != 2 or not all(isinstance(m, torch.nn.Linear) for m in linears):
        raise LookupError(f"{what}: use {use} of the shared block has no rank-r adapter ({type(entry).__name__})")
    return linears[0], linears[1]

def zamba2_attention(attn: torch.nn.Module, hidden: torch.Tensor, config, use: int) -> torch.Tensor:
    """Output of Zamba2's shared attention in its ``use``-th use (hybrid layer ``use`` in hybrid-layer order) for
    ``hidden`` [batch, length, 2 x hidden_size], the RMS-normed concatenation of the layer's input and the
    original embeddings: q, k and v (each plus that use's rank-r adapter, up(down(x)), where
    ``use_shared_attention_adapter``), head_dim = 2 x hidden_size / heads, key/value head h // (heads / kv_heads),
    scores scaled by (head_dim / 2)^-0.5 (not head_dim^-0.5), causal softmax, no position encoding, o_proj."""
    if getattr(config, "use_mem_rope", False):
        raise NotImplementedError("the Zamba2 attention reference models use_mem_rope=False only (no RoPE)")
    x = hidden.double()
    batch, length, _ = x.shape
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = 2 * config.hidden_size // heads
    projected = []
    for name in ("q", "k", "v"):
        y = _linear(x, getattr(attn, f"{name}_proj"))
        if config.use_shared_attention_adapter:
            down, up = _adapter(getattr(attn, f"linear_{name}_adapter_list"), use, f"{name} adapter")
            y = y + _linear(_linear(x, down), up)
        projected.append(y.view(batch, length, -1, head_dim).transpose(1, 2))  # [B, heads, L, D]
    q, k, v = projected
    group = heads // kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim / 2)
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(batch, length, heads * head_dim)
    return _linear(out, attn.o_proj)
