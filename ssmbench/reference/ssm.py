"""Float64 references of the recurrent layer kinds: Mamba's selective scan and Mamba-2's SSD as sequential
recurrences (Falcon-H1's muP multipliers and norm placements as parameters, Zamba2's dt clamp), and LFM2's
gated short convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import _linear, _rms


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
