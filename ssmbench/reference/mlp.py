"""Float64 references of the feed-forward kinds: the squared-ReLU MLP, SwiGLU MLPs (fused, or separate gate and
up with Falcon-H1's multipliers), a top-k mixture of experts and Zamba2's shared MLP with its per-use adapter."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._base import _linear
from .attention import _adapter


def relu2_mlp(mlp: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Output of a squared-ReLU MLP (Nemotron-H's; not gated) for ``hidden``: down(relu(up(x))^2)."""
    return _linear(F.relu(_linear(hidden.double(), mlp.up_proj)).pow(2), mlp.down_proj)

def gated_mlp(hidden: torch.Tensor, gate: torch.nn.Linear, up: torch.nn.Linear, down: torch.nn.Linear, *,
              gate_multiplier: float = 1.0, down_multiplier: float = 1.0) -> torch.Tensor:
    """A SwiGLU MLP with separate gate and up projections: down(SiLU(gate(x)) * up(x)); with Falcon-H1's muP
    multipliers, down(SiLU(gate(x) * gate_multiplier) * up(x)) * down_multiplier."""
    x = hidden.double()
    return _linear(F.silu(_linear(x, gate) * gate_multiplier) * _linear(x, up), down) * down_multiplier

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

def zamba2_mlp(mlp: torch.nn.Module, hidden: torch.Tensor, config, use: int) -> torch.Tensor:
    """Output of Zamba2's shared gated MLP in its ``use``-th use for ``hidden``: gate and up from one projection
    plus that use's rank-r adapter (gate_up(x) + up(down(x))), then down(gelu(gate) * up) (exact, erf GELU)."""
    if config.hidden_act != "gelu":
        raise NotImplementedError(f"the Zamba2 MLP reference models hidden_act 'gelu' only, not {config.hidden_act!r}")
    x = hidden.double()
    down, up = _adapter(mlp.gate_up_proj_adapter_list, use, "MLP adapter")
    gate, value = (_linear(x, mlp.gate_up_proj) + _linear(_linear(x, down), up)).chunk(2, dim=-1)
    return _linear(F.gelu(gate) * value, mlp.down_proj)
