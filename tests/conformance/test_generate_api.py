"""API parity: Mamba and the Transformer take the same generate() arguments and return the same types and
shapes. Every test runs unchanged for both families."""

from __future__ import annotations

import pytest
import torch

from ssmbench.compare import assert_same_generation
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance

NEW = 12


def new_tokens(lm, out: torch.Tensor) -> torch.Tensor:
    prompt_len = lm.encode(PROMPTS[0])["input_ids"].shape[1]
    return out[:, prompt_len:]


def test_greedy_shape_and_prefix(lm):
    enc = lm.encode(PROMPTS[0])
    out = lm.generate(PROMPTS[0], max_new_tokens=NEW, min_new_tokens=NEW)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.long
    assert out.shape == (1, enc["input_ids"].shape[1] + NEW), f"{lm.name}: shape {tuple(out.shape)}"
    assert torch.equal(out[:, : enc["input_ids"].shape[1]], enc["input_ids"]), f"{lm.name}: prompt not kept"


def test_greedy_is_argmax_of_returned_logits(lm):
    out = lm.generate(PROMPTS[1], max_new_tokens=NEW, min_new_tokens=NEW, return_dict_in_generate=True,
                      output_logits=True)
    tokens = torch.stack([step.argmax(-1) for step in out.logits], dim=1)
    prompt_len = lm.encode(PROMPTS[1])["input_ids"].shape[1]
    assert_same_generation(f"{lm.name} greedy vs argmax(logits)", out.sequences[0, prompt_len:], tokens[0])


def test_sampling_reproducible_under_seed(lm):
    kwargs = dict(do_sample=True, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=NEW, min_new_tokens=NEW)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(lm.generate(PROMPTS[2], **kwargs))
    assert torch.equal(runs[0], runs[1]), f"{lm.name}: same seed, different samples"
    assert not torch.equal(runs[0], runs[2]), f"{lm.name}: seed 1 and 2 gave identical samples; sampling ignored?"


def test_top_k_one_equals_greedy(lm):
    greedy = lm.generate(PROMPTS[3], max_new_tokens=NEW, min_new_tokens=NEW)
    torch.manual_seed(0)
    sampled = lm.generate(PROMPTS[3], do_sample=True, top_k=1, temperature=0.7, max_new_tokens=NEW,
                          min_new_tokens=NEW)
    assert torch.equal(greedy, sampled), f"{lm.name}: top_k=1 sampling {sampled.tolist()} != greedy {greedy.tolist()}"


def test_repetition_penalty_applied_to_seen_tokens(lm):
    penalty = 1.7
    prompt_ids = lm.encode(PROMPTS[0])["input_ids"][0]
    # No min_new_tokens here: its processor would also edit the EOS score and blur what is checked.
    out = lm.generate(PROMPTS[0], max_new_tokens=1, repetition_penalty=penalty,
                      return_dict_in_generate=True, output_scores=True, output_logits=True)
    raw, processed = out.logits[0][0].float(), out.scores[0][0].float()
    seen = torch.unique(prompt_ids)
    expected = torch.where(raw[seen] > 0, raw[seen] / penalty, raw[seen] * penalty)
    torch.testing.assert_close(processed[seen], expected, msg=lambda m: f"{lm.name}: penalty on seen tokens: {m}")
    unseen = torch.ones_like(raw, dtype=torch.bool)
    unseen[seen] = False
    finite = unseen & torch.isfinite(processed)
    assert torch.equal(processed[finite], raw[finite]), f"{lm.name}: penalty changed tokens not in the prompt"


def test_num_return_sequences(lm):
    """Three independent samples, not one repeated. At temperature 4: the tiny models put ~0.99 on their next
    token (they know the corpus), so at temperature 1 three honest samples of 12 tokens often coincide."""
    torch.manual_seed(0)
    out = lm.generate(PROMPTS[0], do_sample=True, temperature=4.0, num_return_sequences=3, max_new_tokens=NEW,
                      min_new_tokens=NEW)
    prompt_len = lm.encode(PROMPTS[0])["input_ids"].shape[1]
    assert out.shape == (3, prompt_len + NEW), f"{lm.name}: shape {tuple(out.shape)}"
    assert len({tuple(r.tolist()) for r in out}) > 1, f"{lm.name}: 3 sampled sequences are identical"


def _greedy_token_at(lm, prompt: str, step: int) -> int:
    prompt_len = lm.encode(prompt)["input_ids"].shape[1]
    out = lm.generate(prompt, max_new_tokens=step + 1, min_new_tokens=step + 1)
    return int(out[0, prompt_len + step])


def test_eos_stops_generation(lm):
    prompt = PROMPTS[1]
    prompt_len = lm.encode(prompt)["input_ids"].shape[1]
    stop = _greedy_token_at(lm, prompt, 3)
    out = lm.generate(prompt, max_new_tokens=NEW, eos_token_id=stop)[0, prompt_len:]
    first = (out == stop).nonzero()[0].item()
    assert first <= 3 and len(out) == first + 1, (
        f"{lm.name}: with EOS={stop} (greedy token 3) expected generation to end there; got {out.tolist()}"
    )


def test_min_new_tokens_equal_max_forces_exact_length(lm):
    prompt = PROMPTS[1]
    prompt_len = lm.encode(prompt)["input_ids"].shape[1]
    stop = _greedy_token_at(lm, prompt, 1)
    out = lm.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, eos_token_id=stop)[0, prompt_len:]
    assert len(out) == NEW, f"{lm.name}: asked for exactly {NEW} new tokens, got {len(out)}: {out.tolist()}"
    assert stop not in out[: NEW - 1].tolist(), f"{lm.name}: EOS {stop} emitted before min_new_tokens"


def test_return_dict_scores_and_logits(lm):
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    out = lm.generate(PROMPTS[:2], max_new_tokens=NEW, min_new_tokens=NEW, return_dict_in_generate=True,
                      output_scores=True, output_logits=True)
    assert isinstance(out, GenerateDecoderOnlyOutput), f"{lm.name}: {type(out).__name__}"
    vocab = lm.model.config.vocab_size
    for field in ("scores", "logits"):
        steps = getattr(out, field)
        assert isinstance(steps, tuple) and len(steps) == NEW, f"{lm.name}: {field} has {len(steps)} steps"
        assert all(s.shape == (2, vocab) for s in steps), f"{lm.name}: {field} shapes {[tuple(s.shape) for s in steps]}"
    assert out.sequences.shape[0] == 2


def test_streamer_yields_the_returned_text(lm):
    chunks, out = lm.stream(PROMPTS[0], max_new_tokens=NEW, min_new_tokens=NEW)
    expected = lm.tokenizer.decode(new_tokens(lm, out)[0], skip_special_tokens=True)
    assert "".join(chunks) == expected, f"{lm.name}: streamed {''.join(chunks)!r} != returned {expected!r}"
    assert len(chunks) > 1, f"{lm.name}: the streamer yielded everything at once ({chunks!r})"


def test_text_generation_pipeline(lm):
    from transformers import pipeline

    pipe = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer, device=lm.device)
    text = pipe(PROMPTS[0], max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)[0]["generated_text"]
    out = lm.generate(PROMPTS[0], max_new_tokens=NEW, min_new_tokens=NEW)
    assert text == lm.tokenizer.decode(out[0], skip_special_tokens=True), f"{lm.name}: pipeline text {text!r}"
