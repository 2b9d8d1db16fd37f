"""Builds the embedded tiny checkpoints: a byte-level BPE tokenizer and a small model per architecture, each trained
briefly on the seeded corpus so their greedy generations are varied (degenerate models would let
conformance checks pass vacuously). Run through ``ssmbench make-tiny``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from .archs.base import LEGACY_LAYER_NAMES
from .compat import dtype_kwargs
from .corpus import make_corpus
from .registry import ARCHS, TINY_DIR

VOCAB_SIZE = 512
EOS, PAD = "<|endoftext|>", "<|padding|>"

TINY_CONFIGS = {key: arch.tiny_config for key, arch in ARCHS.items()}


def build_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS)


def build_model(key: str, tokenizer):
    from transformers import AutoConfig, AutoModelForCausalLM

    arch = ARCHS[key]
    eos = tokenizer.convert_tokens_to_ids(EOS)
    pad = tokenizer.convert_tokens_to_ids(PAD) if arch.tiny_pad_token else None
    config = AutoConfig.for_model(arch.model_type, vocab_size=VOCAB_SIZE, bos_token_id=eos, eos_token_id=eos,
                                  pad_token_id=pad, **TINY_CONFIGS[key])
    return AutoModelForCausalLM.from_config(config, **dtype_kwargs(torch.float32))


def _batches(ids: torch.Tensor, seq_len: int, batch: int, steps: int, gen: torch.Generator):
    for _ in range(steps):
        starts = torch.randint(0, ids.numel() - seq_len - 1, (batch,), generator=gen)
        yield torch.stack([ids[s : s + seq_len] for s in starts.tolist()])


def train(model, ids: torch.Tensor, *, steps: int, seq_len: int = 32, batch: int = 24, lr: float = 3e-3,
          seed: int = 0, log=print) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    loss_value = float("nan")
    t0 = time.time()
    for step, x in enumerate(_batches(ids, seq_len, batch, steps, gen)):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        loss_value = loss.item()
        if step % 50 == 0 or step == steps - 1:
            log(f"  step {step:4d} loss {loss_value:.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    return loss_value


def make_portable(folder: Path, config=None, arch_key: str | None = None) -> None:
    """Rewrite what transformers 5.x saves so that 4.46 (the oldest supported) reads it too: the generic
    tokenizer class both know, and the config keys 4.x looks for at the top level. A list of layer kinds that
    ``config`` can also say as a pattern string is saved as the pattern, which every release reads (Nemotron-H's
    kinds were renamed in 5.13: a 5.25 list fails validation on 5.6 ... 5.12); a list kept as a list (Zamba2's
    layers_block_type) goes back to the old names, which 5.13 and later map to the new ones as they load. Then the
    architecture's own rewrite (``Arch.portable``), where ``arch_key`` names one that has it."""
    tok_cfg = folder / "tokenizer_config.json"
    data = json.loads(tok_cfg.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    data["model_input_names"] = ["input_ids", "attention_mask"]  # 4.x would add token_type_ids
    tok_cfg.write_text(json.dumps(data, indent=2) + "\n")
    cfg = folder / "config.json"
    data = json.loads(cfg.read_text())
    data.setdefault("torch_dtype", data.get("dtype", "float32"))
    pattern = getattr(config, "hybrid_override_pattern", None)
    if isinstance(pattern, str) and "layers_block_type" in data:
        del data["layers_block_type"]
        data["hybrid_override_pattern"] = pattern
    if isinstance(data.get("layers_block_type"), list):  # Zamba2's: 5.13 renamed "mamba" linear_attention and
        data["layers_block_type"] = [LEGACY_LAYER_NAMES.get(k, k) for k in data["layers_block_type"]]  # reads both
    if data.get("time_step_limit") == [0.0, {"__float__": "Infinity"}]:  # 5.x's JSON for (0, inf), unreadable
        del data["time_step_limit"]  # to 4.x: (0, inf) is every version's default
    rope = data.get("rope_parameters") or {}
    for key in ("rope_theta", "partial_rotary_factor"):
        if key in rope:
            data.setdefault(key, rope[key])
    if rope.get("rope_type", "default") != "default":  # 4.x reads a scaling (Llama 3's) from rope_scaling
        data.setdefault("rope_scaling", {k: v for k, v in rope.items() if k not in ("rope_theta",
                                                                                 "partial_rotary_factor")})
    if arch_key is not None and ARCHS[arch_key].portable is not None:
        ARCHS[arch_key].portable(data)
    cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


MIN_MARGIN = 1e-3  # logits: 10x the conformance checks' float32 tolerance (1e-4)


def degenerate(lm, new: int = 24) -> str | None:
    """Why a loaded model's greedy generations are degenerate (None: they are varied enough for the conformance
    checks to have power): the suite's prompts, ``new`` tokens each -- at least 30 distinct tokens over them, 6 in
    each continuation, no two continuations alike, and at no step a runner-up logit within ``MIN_MARGIN`` of the
    greedy one (a near tie lets float32 rounding pick the token). The conformance tier holds every tiny checkpoint
    to it.

    Random weights are not enough, however scaled: at a larger ``initializer_range`` (0.1-1.0) every tiny config
    but Mamba-2's passes the above in a second, but such models spread their probability (the greedy token's
    median 0.15-0.4 against the trained checkpoints' 0.97-0.99), and the bfloat16 check then diverged at a gap of
    3 % of the logits' scale (tiny-mamba, 2026-12-05): a check of real bfloat16 bugs needs decisive predictions,
    which a few hundred steps of training give."""
    from .inputs import PROMPTS

    result = lm.generate(PROMPTS, max_new_tokens=new, min_new_tokens=new, output_scores=True,
                         return_dict_in_generate=True)
    out = result.sequences[:, -new:]
    top2 = torch.stack(result.scores, 1).float().clamp(min=-1e9).topk(2, dim=-1).values  # EOS is -inf (min_new)
    margin = float((top2[..., 0] - top2[..., 1]).min())
    if margin < MIN_MARGIN:
        return f"a near tie: a greedy step's top two logits {margin:.1e} apart (at least {MIN_MARGIN:.0e})"
    distinct, per_prompt = len(torch.unique(out)), [len(torch.unique(row)) for row in out]
    if distinct < 30:
        return f"only {distinct} distinct tokens over {len(PROMPTS)} prompts"
    if min(per_prompt) < 6:
        return f"a continuation repeats itself: distinct per prompt {per_prompt}"
    if len({tuple(r.tolist()) for r in out}) != len(PROMPTS):
        return "prompts share a continuation"
    return None


def make_all(out_dir: Path = TINY_DIR, *, steps: int = 600, seed: int = 0, only: list[str] | None = None,
             log=print, chunk: int = 25, seq_len: int = 16, batch: int = 16) -> dict[str, float]:
    """Build, train and save the tiny checkpoints (``only``: these architectures; the others' files stay).
    Each model trains from the same seed, corpus and tokenizer, independently of the others, in chunks of
    ``chunk`` steps until its greedy generations are no longer degenerate (``degenerate``, checked on the saved
    checkpoint as the suite loads it) for two chunks running, at most ``steps``: a few hundred short steps, not
    600 long ones (Zamba2's 600 took 42 minutes on a loaded 2-core machine)."""
    unknown = sorted(set(only or ()) - set(TINY_CONFIGS))
    if unknown:
        raise ValueError(f"unknown architecture(s) {', '.join(unknown)}; valid: {', '.join(TINY_CONFIGS)}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a save every chunk: no progress bar each time
    torch.manual_seed(seed)
    texts = make_corpus(seed=seed)
    tokenizer = build_tokenizer(texts)
    eos = tokenizer.eos_token
    ids = torch.tensor(tokenizer(eos.join(texts))["input_ids"], dtype=torch.long)
    losses = {}
    for key in only or TINY_CONFIGS:
        torch.manual_seed(seed)
        model = build_model(key, tokenizer)
        n = sum(p.numel() for p in model.parameters())
        log(f"{key}: {n} parameters, {ids.numel()} corpus tokens")
        start, done, varied_in_a_row = time.time(), 0, 0
        while done < steps and varied_in_a_row < 2:  # varied twice running: the saved one is not a lucky chunk
            losses[key] = train(model, ids, steps=min(chunk, steps - done), seq_len=seq_len, batch=batch,
                                seed=seed + done, log=lambda *a: None)
            done += min(chunk, steps - done)
            why = _save(model, key, texts, out_dir / key)
            varied_in_a_row = varied_in_a_row + 1 if why is None else 0
            log(f"  {key}: {done} steps, loss {losses[key]:.3f}, {time.time() - start:.0f} s: {why or 'varied'}")
        if why is not None:
            log(f"  {key}: still degenerate after {steps} steps ({why}): the conformance tier will say so")
        else:
            log(f"{key}: {done} steps in {time.time() - start:.0f} s")
    return losses


def _save(model, key: str, texts: list[str], target: Path) -> str | None:
    """Save the checkpoint with its own tokenizer files, portable to 4.46; load it as the suite does and say
    why its generations are degenerate (None: they are not)."""
    from .loading import load
    from .registry import resolve_model_set

    model.eval()
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tok = build_tokenizer(texts)  # fresh copy: each checkpoint carries its own tokenizer files
    if ARCHS[key].tiny_pad_token:  # as the real tokenizer (GPT-NeoX's has one, phi-2's none)
        tok.pad_token = PAD
    tok.save_pretrained(target)
    make_portable(target, model.config, key)
    spec = resolve_model_set("tiny", archs=[key])[0]
    lm = load(_at(spec, target), torch.device("cpu"), torch.float32)
    try:
        with torch.no_grad():
            return degenerate(lm)
    finally:
        lm.free()
        model.train()


def _at(spec, target: Path):
    import dataclasses

    return dataclasses.replace(spec, location=str(target), unavailable=None)
