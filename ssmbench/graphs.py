"""The suite's own CUDA-graph decoding for Mamba, for where transformers offers no compiled decode for it
(4.x: ``cache_implementation="static"`` is ignored for Mamba, so generate() stays eager).

Mamba's decode step reads and updates a fixed-size state in place (conv window + SSM state): nothing grows
with the context, so the whole one-token step -- every layer, the LM head and the greedy argmax feeding the
next step -- can be captured once in a CUDA graph and replayed per token, as mamba-ssm's own
``decode(cg=True)`` does. The prompt is prefilled eagerly (the model's normal forward, kernels if resolved);
its state is then copied into the graph's static state, so one capture serves every later call of the same
batch size. Off CUDA the same static-state loop runs without capture (what the CPU self-tests check).

Greedy and unpadded only: this is a decode backend for benchmarks and parity checks, not a generate().
"""

from __future__ import annotations

import inspect
import sys
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .cache import reachable_tensors
from .compat import find_cache


def cache_argument(model: Any) -> str:
    """The forward argument that takes Mamba's cache: ``cache`` (transformers >= 5.2x) or ``cache_params``."""
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "cache_params"):
        if name in params:
            return name
    raise TypeError(f"{type(model).__name__}.forward takes no Mamba cache argument; parameters: {list(params)}")


def takes_cache_position(model: Any) -> bool:
    """transformers 4.x Mamba needs ``cache_position`` on every cached step (its mixer keys prefill vs decode on it)."""
    return "cache_position" in inspect.signature(model.forward).parameters


def _kernels_forward_4x(model: Any) -> bool:
    """4.x only: the mixer's CUDA-kernel forward tests ``cache_position[0] > 0`` in Python -- a host sync on a
    GPU tensor, forbidden while capturing -- so that path gets the position as a CPU tensor instead."""
    mod = sys.modules.get(type(model).__module__)
    return bool(getattr(mod, "is_fast_path_available", False)) and model.device.type == "cuda"


@dataclass
class _Slot:
    """Static buffers (and, on CUDA, the captured graph) for one batch size."""

    cache: Any
    token: torch.Tensor  # [batch, 1] the token the next step consumes
    position: torch.Tensor | None  # 4.x cache_position
    advance_position: bool  # the position lives on the device and is advanced inside the step
    states: list[torch.Tensor] = field(default_factory=list)  # the cache's tensors, updated in place
    graph: Any = None
    capture_s: float | None = None  # seconds the capture (warm-up included) took


class GraphedMambaDecoder:
    """Greedy decoding of a Mamba model with the one-token step captured in a CUDA graph (``capture=None``:
    capture on CUDA only)."""

    WARMUP_STEPS = 2  # run before capture, on a side stream: kernel autotuning and lazy inits stay out of the graph

    def __init__(self, model: Any, capture: bool | None = None):
        self._model = weakref.ref(model)  # the suite keeps decoders per model: a strong ref would keep it alive
        self.device = model.device
        self.capture = (self.device.type == "cuda") if capture is None else capture
        if self.capture and self.device.type != "cuda":
            raise ValueError(f"CUDA-graph capture needs a CUDA model; this one is on {self.device}")
        self.cache_arg = cache_argument(model)
        self.with_position = takes_cache_position(model)
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.slots: dict[tuple[int, bool], _Slot] = {}

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("the model this decoder was built for has been freed")
        return model

    # -- one step ----------------------------------------------------------------------------------------
    def _step(self, slot: _Slot) -> None:
        kwargs: dict[str, Any] = {self.cache_arg: slot.cache, "use_cache": True, "return_dict": True}
        if self.with_position:
            kwargs["cache_position"] = slot.position
        logits = self.model(input_ids=slot.token, **kwargs).logits
        slot.token.copy_(logits[:, -1].argmax(-1, keepdim=True))
        if slot.advance_position:
            slot.position.add_(1)

    def _new_slot(self, cache: Any, first: torch.Tensor, prompt_len: int) -> _Slot:
        position, advance = None, False
        if self.with_position:
            if _kernels_forward_4x(self.model):
                position = torch.tensor([prompt_len])  # only "> 0" is read on that path: a constant will do
            else:
                position, advance = torch.tensor([prompt_len], device=self.device), True
        slot = _Slot(cache, first.view(-1, 1).clone(), position, advance)
        slot.states = reachable_tensors(cache)
        if self.capture:
            start = time.perf_counter()
            saved = [t.clone() for t in slot.states + [slot.token]]
            saved_position = None if position is None else position.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP_STEPS):
                    self._step(slot)
            torch.cuda.current_stream().wait_stream(side)
            # the warm-up must not advance the real state
            for t, s in zip(slot.states + [slot.token], saved, strict=True):
                t.copy_(s)
            if saved_position is not None:
                position.copy_(saved_position)
            slot.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(slot.graph):
                self._step(slot)
            torch.cuda.synchronize()
            slot.capture_s = time.perf_counter() - start
        return slot

    def _load(self, slot: _Slot, cache: Any, first: torch.Tensor, prompt_len: int) -> None:
        """Put a fresh prefill's state into the slot's static buffers."""
        fresh = reachable_tensors(cache)
        if len(fresh) != len(slot.states) or any(a.shape != b.shape for a, b in zip(fresh, slot.states, strict=True)):
            raise RuntimeError(f"the prefill cache ({len(fresh)} tensors) does not match the captured state "
                               f"({len(slot.states)} tensors): cache layout changed between calls")
        for static, new in zip(slot.states, fresh, strict=True):
            static.copy_(new)
        slot.token.copy_(first.view(-1, 1))
        if slot.advance_position:
            slot.position.fill_(prompt_len)

    # -- decoding ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, new_tokens: int,
                 on_token: Callable[[], None] | None = None) -> torch.Tensor:
        """Greedy continuation of an unpadded batch: ``[batch, new_tokens]`` token ids. ``on_token`` is called
        once the first token exists and after every further step (for step timestamps)."""
        if new_tokens < 1:
            raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
        batch, prompt_len = input_ids.shape
        # Prefill keeps the last position's logits only, as generate() does (4.x Mamba computes them all).
        keep = {"logits_to_keep": 1} if self.keeps_logits else {}
        out = self.model(input_ids=input_ids, use_cache=True, return_dict=True, **keep)
        first = out.logits[:, -1].argmax(-1)
        tokens = torch.empty(batch, new_tokens, dtype=torch.long, device=input_ids.device)
        tokens[:, 0] = first
        if on_token:
            on_token()
        if new_tokens == 1:
            return tokens
        slot = self.slot_for(batch)
        if slot is None:
            slot = self.slots[self._key(batch)] = self._new_slot(find_cache(out), first, prompt_len)
        else:
            self._load(slot, find_cache(out), first, prompt_len)
        for i in range(1, new_tokens):
            if slot.graph is not None:
                slot.graph.replay()
            else:
                self._step(slot)
            tokens[:, i] = slot.token[:, 0]
            if on_token:
                on_token()
        return tokens

    def _key(self, batch: int) -> tuple[int, bool]:
        return batch, _kernels_forward_4x(self.model)  # the 4.x kernel path keeps its position on the host

    def slot_for(self, batch: int) -> _Slot | None:
        """The static state (and graph) that decodes batches of this size on the model's current path."""
        return self.slots.get(self._key(batch))
