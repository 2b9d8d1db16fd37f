"""Independent float64 reference implementations: Mamba's selective scan as the paper's sequential
recurrence, and Phi's partial-rotary causal softmax attention. They read only module weights and config
values, never transformers' own helper functions."""

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


def mamba_mixer(mixer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Output of a Mamba (v1) mixer for ``hidden`` [batch, length, hidden], computed step by step."""
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


def rope_settings(config) -> tuple[float, float]:
    """(rope_theta, partial_rotary_factor) from a Phi config, old or new style."""
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    partial = params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0))
    return float(theta), float(partial)


def phi_attention(attn: torch.nn.Module, hidden: torch.Tensor, config) -> torch.Tensor:
    """Output of a Phi self-attention block for ``hidden`` [batch, length, hidden] at positions 0..L-1."""
    x = hidden.double()
    batch, length, _ = x.shape
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    theta, partial = rope_settings(config)
    rot = int(head_dim * partial)

    def split(t):
        return t.view(batch, length, -1, head_dim).transpose(1, 2)  # [B, heads, L, D]

    q, k, v = split(_linear(x, attn.q_proj)), split(_linear(x, attn.k_proj)), split(_linear(x, attn.v_proj))
    inv_freq = 1.0 / theta ** (torch.arange(0, rot, 2, dtype=torch.float64, device=x.device) / rot)
    angles = torch.arange(length, dtype=torch.float64, device=x.device)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # [L, rot], GPT-NeoX half layout

    def rotate(t):
        r, rest = t[..., :rot], t[..., rot:]
        half = rot // 2
        rotated = torch.cat([-r[..., half:], r[..., :half]], dim=-1)
        return torch.cat([r * cos + rotated * sin, rest], dim=-1)

    q, k = rotate(q), rotate(k)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(batch, length, heads * head_dim)
    return _linear(out, attn.dense)


def capture(module: torch.nn.Module, run) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``run()`` and return the first input and first output ``module`` saw in it."""
    seen: dict[str, torch.Tensor] = {}

    def hook(mod, args, kwargs, output):
        if "input" not in seen:
            seen["input"] = args[0] if args else kwargs["hidden_states"]
            seen["output"] = output[0] if isinstance(output, tuple) else output

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen["input"].detach(), seen["output"].detach()
