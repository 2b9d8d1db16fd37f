"""Shared pieces of the float64 references: a linear layer and an RMS norm in float64, from a module's weights."""

from __future__ import annotations

import torch


def _w(linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    bias = linear.bias.detach().double() if linear.bias is not None else None
    return linear.weight.detach().double(), bias

def _linear(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    w, b = _w(linear)
    y = x @ w.T
    return y + b if b is not None else y

def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

def rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """An RMS norm module's output in float64: x / rms(x) times its weight (its eps: ``variance_epsilon`` or
    ``eps``)."""
    eps = getattr(norm, "variance_epsilon", None) or norm.eps
    return _rms(x.double(), eps) * norm.weight.detach().double()
