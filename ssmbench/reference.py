"""Independent float64 reference implementations: Mamba's selective scan and Mamba-2's SSD as sequential
recurrences (Falcon-H1's muP multipliers and norm placements as parameters), causal softmax attention (rotary:
Phi's partial, grouped-query for Qwen2 and Llama; or none, as Nemotron-H's; a key multiplier, as Falcon-H1's; a
QK norm, as LFM2's), the squared-ReLU MLP, SwiGLU MLPs (fused, or separate gate and up with Falcon-H1's
multipliers), a top-k mixture of experts, LFM2's gated short convolution and Zamba2's shared attention and MLP with
their per-use adapters. They read only module weights and config values, never transformers' own helper
functions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _w(linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    bias = linear.bias.detach().double() if linear.bias is not None else None
    return linear.weight.detach().double(), bias


def _linear(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    w, b = _w(linear)
    y = x @ w.T
    return y + b if b is not None else y


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def mamba_mixer(mixer: torch.nn.Module, hidden: torch.Tensor, bcdt_rms_eps: float | None = None) -> torch.Tensor:
    """Output of a Mamba (v1) mixer for ``hidden`` [batch, length, hidden], computed step by step. With
    ``bcdt_rms_eps`` (FalconMamba), the low-rank dt, B and C are each RMS-normalised, without weights, before
    use."""
    x = hidden.double()
    xs, z = _linear(x, mixer.in_proj).chunk(2, dim=-1)  # [B, L, I] each
    batch, length, inner = xs.shape
    kernel = mixer.conv1d.weight.shape[-1]
    w = mixer.conv1d.weight.detach().double()[:, 0, :]  # [I, K]
    padded = F.pad(xs, (0, 0, kernel - 1, 0))  # causal: K-1 zeros before the first token
    conv = sum(padded[:, k : k + length, :] * w[:, k] for k in range(kernel))
    if mixer.conv1d.bias is not None:
        conv = conv + mixer.conv1d.bias.detach().double()
    u = F.silu(conv)  # [B, L, I]
    n = mixer.A_log.shape[-1]
    rank = mixer.dt_proj.weight.shape[-1]
    dt_low, b_ssm, c_ssm = torch.split(_linear(u, mixer.x_proj), [rank, n, n], dim=-1)
    if bcdt_rms_eps is not None:
        dt_low, b_ssm, c_ssm = (_rms(t, bcdt_rms_eps) for t in (dt_low, b_ssm, c_ssm))
    dt = F.softplus(_linear(dt_low, mixer.dt_proj))  # [B, L, I]
    a = -torch.exp(mixer.A_log.detach().double())  # [I, N]
    d = mixer.D.detach().double()
    h = torch.zeros(batch, inner, n, dtype=torch.float64, device=x.device)
    ys = []
    for t in range(length):
        # h_t = exp(dt A) h_{t-1} + dt B_t u_t ;  y_t = C_t . h_t + D u_t  (zero-order hold on A, Euler on B)
        h = torch.exp(dt[:, t, :, None] * a) * h + dt[:, t, :, None] * b_ssm[:, t, None, :] * u[:, t, :, None]
        ys.append((h * c_ssm[:, t, None, :]).sum(-1) + d * u[:, t])
    y = torch.stack(ys, dim=1) * F.silu(z)
    return _linear(y, mixer.out_proj)


def mamba2_mixer(mixer: torch.nn.Module, hidden: torch.Tensor, *, in_multiplier: float = 1.0,
                 zxbcdt_multipliers: tuple[float, float, float, float, float] | None = None,
                 norm: str | None = "after_gate", dt_limit: tuple[float, float] | None = None) -> torch.Tensor:
    """Output of a Mamba-2 (SSD) mixer for ``hidden`` [batch, length, hidden], as the sequential recurrence
    over each head's [head_dim x state] matrix: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t + D x_t
    (A, dt and D scalars per head; B and C shared by the heads of a group), then the gated grouped RMS norm.
    Sizes are the mixer's own (Mamba-2's and the hybrids' Mamba-2 mixers name them alike). dt is clamped to
    ``dt_limit`` (Zamba2's: (time_step_min, inf), from its config), else to the mixer's ``time_step_limit``.

    Falcon-H1's mixer, from its config: ``in_multiplier`` scales the input before in_proj, ``zxbcdt_multipliers``
    each of in_proj's five segments (gate z, x, B, C, dt) after it; ``norm`` is where the gated RMS norm sits:
    "after_gate" (Mamba-2's: norm(y * silu(z)) per group), "before_gate" (norm(y) * silu(z)) or None (no norm:
    y * silu(z))."""
    if mixer.activation not in ("silu", "swish"):
        raise NotImplementedError(f"Mamba-2 reference: activation {mixer.activation!r}")
    x = hidden.double()
    batch, length, _ = x.shape
    heads, head_dim, groups, n = mixer.num_heads, mixer.head_dim, mixer.n_groups, mixer.ssm_state_size
    inner = heads * head_dim
    conv_dim = inner + 2 * groups * n
    projected = _linear(x * in_multiplier, mixer.in_proj)
    if zxbcdt_multipliers is not None:
        sizes = [inner, inner, groups * n, groups * n, heads]
        projected = torch.cat([part * m for part, m in zip(projected.split(sizes, dim=-1), zxbcdt_multipliers,
                                                             strict=True)], dim=-1)
    gate, xbc, dt = torch.split(projected, [inner, conv_dim, heads], dim=-1)
    kernel = mixer.conv1d.weight.shape[-1]
    w = mixer.conv1d.weight.detach().double()[:, 0, :]  # [conv_dim, K]
    padded = F.pad(xbc, (0, 0, kernel - 1, 0))
    conv = sum(padded[:, k : k + length, :] * w[:, k] for k in range(kernel))
    if mixer.conv1d.bias is not None:
        conv = conv + mixer.conv1d.bias.detach().double()
    xs, b_ssm, c_ssm = torch.split(F.silu(conv), [inner, groups * n, groups * n], dim=-1)
    xs = xs.view(batch, length, heads, head_dim)
    per_group = heads // groups
    b_ssm = b_ssm.view(batch, length, groups, n).repeat_interleave(per_group, dim=2)  # [B, L, H, N]
    c_ssm = c_ssm.view(batch, length, groups, n).repeat_interleave(per_group, dim=2)
    low, high = dt_limit or getattr(mixer, "time_step_limit", (0.0, float("inf")))
    dt = F.softplus(dt + mixer.dt_bias.detach().double()).clamp(low, high)  # [B, L, H]
    a = -torch.exp(mixer.A_log.detach().double())  # [H]
    d = mixer.D.detach().double()
    h = torch.zeros(batch, heads, head_dim, n, dtype=torch.float64, device=x.device)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * a)[:, :, None, None]  # [B, H, 1, 1]
        h = decay * h + (dt[:, t, :, None] * xs[:, t])[..., None] * b_ssm[:, t, :, None, :]
        ys.append((h * c_ssm[:, t, :, None, :]).sum(-1) + d[:, None] * xs[:, t])
    y = torch.stack(ys, dim=1).reshape(batch, length, inner)
    if norm not in ("after_gate", "before_gate", None):
        raise ValueError(f"Mamba-2 reference: norm {norm!r}")
    if norm != "before_gate":
        y = y * F.silu(gate)
    if norm is not None:
        grouped = y.view(batch, length, groups, inner // groups)
        eps = mixer.norm.variance_epsilon
        y = (grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + eps)).view(batch, length, inner)
        y = y * mixer.norm.weight.detach().double()
    if norm == "before_gate":
        y = y * F.silu(gate)
    return _linear(y, mixer.out_proj)


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


def zamba2_mlp(mlp: torch.nn.Module, hidden: torch.Tensor, config, use: int) -> torch.Tensor:
    """Output of Zamba2's shared gated MLP in its ``use``-th use for ``hidden``: gate and up from one projection
    plus that use's rank-r adapter (gate_up(x) + up(down(x))), then down(gelu(gate) * up) (exact, erf GELU)."""
    if config.hidden_act != "gelu":
        raise NotImplementedError(f"the Zamba2 MLP reference models hidden_act 'gelu' only, not {config.hidden_act!r}")
    x = hidden.double()
    down, up = _adapter(mlp.gate_up_proj_adapter_list, use, "MLP adapter")
    gate, value = (_linear(x, mlp.gate_up_proj) + _linear(_linear(x, down), up)).chunk(2, dim=-1)
    return _linear(F.gelu(gate) * value, mlp.down_proj)


def relu2_mlp(mlp: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Output of a squared-ReLU MLP (Nemotron-H's; not gated) for ``hidden``: down(relu(up(x))^2)."""
    return _linear(F.relu(_linear(hidden.double(), mlp.up_proj)).pow(2), mlp.down_proj)


def rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """An RMS norm module's output in float64: x / rms(x) times its weight (its eps: ``variance_epsilon`` or
    ``eps``)."""
    eps = getattr(norm, "variance_epsilon", None) or norm.eps
    return _rms(x.double(), eps) * norm.weight.detach().double()


def gated_mlp(hidden: torch.Tensor, gate: torch.nn.Linear, up: torch.nn.Linear, down: torch.nn.Linear, *,
              gate_multiplier: float = 1.0, down_multiplier: float = 1.0) -> torch.Tensor:
    """A SwiGLU MLP with separate gate and up projections: down(SiLU(gate(x)) * up(x)); with Falcon-H1's muP
    multipliers, down(SiLU(gate(x) * gate_multiplier) * up(x)) * down_multiplier."""
    x = hidden.double()
    return _linear(F.silu(_linear(x, gate) * gate_multiplier) * _linear(x, up), down) * down_multiplier


def short_conv(block: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """LFM2's gated short convolution for ``hidden`` [batch, length, hidden]: B, C and x from ``in_proj``'s three
    thirds, the causal depthwise convolution (``conv``, its kernel over the last K positions, K-1 zeros before the
    first) of B * x, gated by C, then ``out_proj``."""
    x = hidden.double()
    b_gate, c_gate, xs = _linear(x, block.in_proj).chunk(3, dim=-1)
    u = b_gate * xs
    length = u.shape[1]
    kernel = block.conv.weight.shape[-1]
    w = block.conv.weight.detach().double()[:, 0, :]  # [hidden, K]
    padded = F.pad(u, (0, 0, kernel - 1, 0))
    conv = sum(padded[:, k : k + length, :] * w[:, k] for k in range(kernel))
    if block.conv.bias is not None:
        conv = conv + block.conv.bias.detach().double()
    return _linear(c_gate * conv, block.out_proj)


def fused_swiglu(hidden: torch.Tensor, input_linear: torch.nn.Linear, output_linear: torch.nn.Linear) -> torch.Tensor:
    """A gated MLP whose gate and up projections are one matrix (Granite's shared MLP): the first half of
    ``input_linear``'s outputs through SiLU gates the second half, then ``output_linear``."""
    gate, up = _linear(hidden.double(), input_linear).chunk(2, dim=-1)
    return _linear(F.silu(gate) * up, output_linear)


def top_k_moe(hidden: torch.Tensor, router: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
              top_k: int) -> torch.Tensor:
    """A sparse mixture of experts for ``hidden`` [batch, length, hidden]: the router's logits (``router``
    [experts, hidden]) pick each token's ``top_k`` experts, weighted by a softmax over those k logits; expert e
    computes down[e] (SiLU(gate) * up), gate and up the halves of gate_up[e] [2 x inner, hidden] applied to the
    token. Every expert is computed for every token (a tiny model's few experts) and the unpicked ones weigh 0."""
    x = hidden.double()
    logits = x @ router.detach().double().T  # [B, L, E]
    top, index = logits.topk(top_k, dim=-1)
    weights = torch.zeros_like(logits).scatter(-1, index, top.softmax(-1))  # [B, L, E], k non-zero per token
    gate, up = torch.einsum("blh,eoh->bleo", x, gate_up.detach().double()).chunk(2, dim=-1)
    outs = torch.einsum("blei,ehi->bleh", F.silu(gate) * up, down.detach().double())  # [B, L, E, hidden]
    return (weights[..., None] * outs).sum(-2)


def phi_attention(attn: torch.nn.Module, hidden: torch.Tensor, config) -> torch.Tensor:
    """Output of a Phi self-attention block (partial rotary, output projection ``dense``)."""
    return attention(attn, hidden, config, "dense")


def capture(module: torch.nn.Module, run) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``run()`` and return the first input and first output ``module`` saw in it."""
    seen: dict[str, torch.Tensor] = {}

    def hook(mod, args, kwargs, output):
        if "input" not in seen:
            # a layer takes hidden_states; a whole model (a kind that checks the model end to end) input_ids
            seen["input"] = args[0] if args else kwargs.get("hidden_states", kwargs.get("input_ids"))
            logits = getattr(output, "logits", None)  # a model's output: its logits
            seen["output"] = logits if logits is not None else output[0] if isinstance(output, tuple) else output

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen["input"].detach(), seen["output"].detach()


def layer_pairs(model: torch.nn.Module, layer, run) -> dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """For one kind of layer (``Arch.layers[kind]``): its first and its last layer in ``model``, each with what it
    output in ``run()`` and what its float64 reference gives for the input it saw there."""
    found = layer.find(model)
    if not found:
        raise LookupError("no layer of this kind in the model")
    out = {}
    for where, (module, expected_of) in {"first": found[0], "last": found[-1]}.items():
        with torch.no_grad():
            hidden, output = capture(module, run)
            out[where] = (module, output, expected_of(hidden))
    return out
