"""Loading a ModelSpec into a model and tokenizer on a device, and the small generate helper tests share."""

from __future__ import annotations

import functools
import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .compat import dtype_kwargs
from .names import DTYPE_CHOICES, DTYPE_NAMES  # noqa: F401  (DTYPE_CHOICES re-exported)
from .registry import ModelSpec

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
assert tuple(DTYPES) == DTYPE_NAMES


def resolve_dtype(name: str, spec: ModelSpec, purpose: str = "conformance") -> torch.dtype:
    """``auto`` for conformance: float32 for models with made-up weights (tiny and synthetic), bfloat16 for
    real checkpoints. Random deep Mamba stacks amplify rounding layer by layer (README, "Why synthetic models
    check in float32"), so two correct code paths can disagree there in bfloat16. ``auto`` for benchmarks:
    bfloat16 for full-size models (as the quickstart runs them), float32 for the tiny ones."""
    if name == "auto":
        if purpose == "benchmark":
            return torch.float32 if spec.source == "tiny" else torch.bfloat16
        return torch.bfloat16 if spec.source == "pretrained" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "vocab.txt")


def check_checkpoint(spec: ModelSpec) -> None:
    """What a checkpoint directory must hold to be the model it is given for: a config of this architecture's
    model_type and a tokenizer's files (the weights are checked as they load). Raises ValueError naming what
    is wrong; ``load`` turns it into a CheckpointError with the path."""
    import json

    path = Path(spec.location)
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise ValueError(f"config.json unreadable: {exc}") from exc
    if model_type != spec.arch.model_type:
        raise ValueError(f"config.json says model_type {model_type!r}; {spec.arch.key} is {spec.arch.model_type!r} "
                         "(is this another architecture's checkpoint?)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"no tokenizer files (any of {', '.join(TOKENIZER_FILES)})")


def load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    # Synthetic models have no tokenizer of their own: they borrow the tiny checkpoint's, padded with
    # placeholder tokens up to the real vocabulary size so that every id a random model emits decodes.
    location = spec.location if spec.source != "synthetic" else str(spec.arch.tiny_path)
    tok = AutoTokenizer.from_pretrained(location, local_files_only=True)
    if spec.source == "synthetic":
        tok.add_tokens([f"<|synthetic{i}|>" for i in range(len(tok), spec.arch.synthetic_config["vocab_size"])])
    if tok.pad_token is None:  # phi-2's tokenizer has none; the usual practice is EOS as padding
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(spec: ModelSpec, device: torch.device, dtype: torch.dtype, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM

    if spec.unavailable:
        raise FileNotFoundError(spec.unavailable)
    if spec.source == "synthetic":
        config = AutoConfig.for_model(spec.arch.model_type, **spec.arch.synthetic_config)
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, **dtype_kwargs(dtype))
    else:
        model, info = AutoModelForCausalLM.from_pretrained(spec.location, local_files_only=True,
                                                           output_loading_info=True, **dtype_kwargs(dtype))
        wrong = {what: sorted(info.get(key) or ()) for what, key in
                 (("missing", "missing_keys"), ("unexpected", "unexpected_keys"), ("mismatched", "mismatched_keys"))}
        if any(wrong.values()):  # transformers fills the gaps with random weights and only logs it
            raise ValueError("weights do not match the config: " + "; ".join(
                f"{len(keys)} {what} ({', '.join(map(str, keys[:4]))}{', ...' if len(keys) > 4 else ''})"
                for what, keys in wrong.items() if keys))
        model.to(device)
    model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.config.eos_token_id
    return model


@dataclass
class LoadedModel:
    """A model resident on its device with its tokenizer, and how long loading took."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    load_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def encode(self, prompts: list[str] | str) -> dict[str, torch.Tensor]:
        prompts = [prompts] if isinstance(prompts, str) else prompts
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True)
        # Only what both families' generate() takes (a generic tokenizer may add token_type_ids).
        return {k: batch[k].to(self.device) for k in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def generate(self, prompts: list[str] | str | torch.Tensor, **kwargs) -> Any:
        """generate() on text prompts (tokenized, left-padded) or on an unpadded batch of token ids."""
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        if isinstance(prompts, torch.Tensor):
            inputs = {"input_ids": prompts, "attention_mask": torch.ones_like(prompts)}
        else:
            inputs = self.encode(prompts)
        return self.model.generate(**inputs, **kwargs)

    def stream(self, prompt: str, timeout_s: float = 120.0, **kwargs) -> tuple[list[str], Any]:
        """generate() in a thread through a ``TextIteratorStreamer``: (the text chunks streamed, the returned
        output). An exception in the generating thread is raised here; no token for ``timeout_s`` raises
        TimeoutError -- a consumer never waits forever on a producer that died."""
        import queue
        import threading

        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s)
        result: dict[str, Any] = {}

        def produce() -> None:
            try:
                result["out"] = self.generate(prompt, streamer=streamer, **kwargs)
            except BaseException as exc:  # handed to the consumer, which raises it
                result["error"] = exc
                streamer.text_queue.put(streamer.stop_signal)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            chunks = list(streamer)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no token streamed for {timeout_s:g} s") from None
        thread.join(timeout_s)
        if "error" in result:
            raise result["error"]
        if thread.is_alive():
            raise TimeoutError(f"{self.name}: generate() did not return {timeout_s:g} s after streaming ended")
        return chunks, result["out"]

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model(input_ids=input_ids.to(self.device), **kwargs).logits

    @functools.cached_property
    def noise_floor(self) -> float:
        """Relative disagreement between two equally correct computations of the same logits: a prompt
        alone, and the same prompt as row 0 of a batch of two (other GEMM shapes, other rounding)."""
        from .compare import check_noise_floor, relative_error
        from .inputs import PROMPTS

        ids = self.encode(PROMPTS[0])["input_ids"]
        with torch.no_grad():
            alone = self.model(input_ids=ids, use_cache=False).logits
            batched = self.model(input_ids=ids.repeat(2, 1), use_cache=False).logits[:1]
        return check_noise_floor(self.name, self.spec.source, relative_error(batched, alone))

    @torch.no_grad()
    def rounding_floors(self, input_ids: torch.Tensor, plain: torch.Tensor, positions: range,
                        seed: int = 0) -> list[float]:
        """How far a rounding-sized change moves this model's logits at each of ``positions`` of ``input_ids``:
        the full forward pass with its input embeddings scaled by (1 + eps * N(0, 1)) (eps: the dtype's; seeded)
        against the plain one (``plain``: ``logits(input_ids, use_cache=False)``, which the caller has), position
        by position. The noise floor above is read at a short prompt; a long one
        can sit far above it (synthetic Mamba-2, random weights, float32, on a CPU: 1.4e-4 at position 6, 3e-4 up
        to 255, 4-6e-3 at 256-257, past its first 256-token chunk), and two correct computations of such a
        position (a decode step against the full forward) differ by as much."""
        from .compare import check_noise_floor, relative_error

        ids = input_ids.to(self.device)
        eps = torch.finfo(self.dtype).eps
        gen = torch.Generator(device="cpu").manual_seed(seed)

        def perturb(_module, _args, out):
            noise = torch.randn(out.shape, generator=gen).to(device=out.device, dtype=torch.float32)
            return (out.float() * (1 + eps * noise)).to(out.dtype)

        handle = self.model.get_input_embeddings().register_forward_hook(perturb)
        try:
            moved = self.model(input_ids=ids, use_cache=False).logits
        finally:
            handle.remove()
        return [check_noise_floor(self.name, self.spec.source, relative_error(moved[:, p], plain[:, p]),
                                  f"a rounding-sized change of the input moves the logits at position {p}")
                for p in positions]

    def free(self) -> None:
        self.model = None
        if self.device.type == "cuda" and "torch._dynamo" in sys.modules:
            sys.modules["torch._dynamo"].reset()  # compiled code and CUDA-graph pools of this model's decode
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be loaded (truncated weights, a bad config): names the path."""


def load(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    start = time.perf_counter()
    try:
        if spec.source != "synthetic":
            check_checkpoint(spec)
        tokenizer = load_tokenizer(spec)
        model = load_model(spec, device, dtype)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:
        if spec.source == "synthetic":
            raise
        files = ", ".join(sorted(p.name for p in Path(spec.location).glob("*"))) if spec.location and Path(
            spec.location).is_dir() else "not a directory"
        raise CheckpointError(
            f"{spec.name}: cannot load the checkpoint at {spec.location} ({files}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if spec.arch.kernels is not None:
        from . import impl

        impl.force_reference_off_cuda(model, spec.arch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return LoadedModel(spec, model, tokenizer, device, dtype, time.perf_counter() - start)
