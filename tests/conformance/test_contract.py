"""generate()'s contract around its outputs, for every architecture: token counts honoured exactly (max_new_tokens,
min_new_tokens, one or several EOS ids, stop strings, max_length) with and without the cache, for greedy, sampling
and beams; the cache's size after every step (an SSM's fixed, an attention cache one position a step, a hybrid the
sum); scores and logits of a cached run equal an uncached run's, and the processors act on the logits they are
given whatever the architecture; seeded sampling the same with and without the cache."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
)

from ssmbench.cache import expected_cache_bytes, tensor_bytes
from ssmbench.compare import assert_logits_close
from ssmbench.compat import find_cache
from ssmbench.inputs import PROMPTS

pytestmark = pytest.mark.conformance

N = 6
MODES = {  # how a mode samples; each seeded before its call
    "greedy": dict(do_sample=False),
    "sample": dict(do_sample=True, temperature=1.5, top_k=0, top_p=1.0),
    "beams": dict(do_sample=False, num_beams=2),
}


def _run(lm, mode: str, use_cache: bool, **kwargs) -> torch.Tensor:
    """The new tokens of one call on PROMPTS[1] (one row), seeded. The model's own EOS ids are suppressed in
    every call: the reference call's min_new_tokens masks them and a call given another eos_token_id does not, so
    sampling would otherwise draw from two distributions (on CUDA, masking one token moved every later draw)."""
    torch.manual_seed(7)
    prompt_len = lm.encode(PROMPTS[1])["input_ids"].shape[1]
    own = lm.model.generation_config.eos_token_id
    own = [] if own is None else [own] if isinstance(own, int) else list(own)
    out = lm.generate(PROMPTS[1], use_cache=use_cache, **MODES[mode], suppress_tokens=own or None, **kwargs)
    return out[0, prompt_len:]


def _reference(lm, mode: str, use_cache: bool) -> torch.Tensor:
    """Exactly N new tokens, no early end: what the calls below cut short."""
    return _run(lm, mode, use_cache, max_new_tokens=N, min_new_tokens=N)


def _first(tokens: torch.Tensor, ids: set[int]) -> int:
    hits = [i for i, t in enumerate(tokens.tolist()) if t in ids]
    return hits[0] if hits else len(tokens)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "nocache"])
@pytest.mark.parametrize("mode", ["greedy", "sample"])
def test_generation_ends_right_after_the_first_eos(lm, mode, use_cache):
    """EOS = the token the reference call makes at step 3 (or earlier, where it occurs earlier): the call ends
    right after its first occurrence, every token before it the reference's -- for one EOS id and for several,
    the earliest of any of them ending it."""
    ref = _reference(lm, mode, use_cache)
    stop = int(ref[3])
    end = _first(ref, {stop})
    got = _run(lm, mode, use_cache, max_new_tokens=N, eos_token_id=stop)
    assert got.tolist() == ref[:end + 1].tolist(), (
        f"{lm.name} ({mode}, {'cache' if use_cache else 'no cache'}): EOS {stop} first at new token {end}; got "
        f"{got.tolist()}, expected {ref[:end + 1].tolist()}")
    later, earlier = int(ref[5]), int(ref[2])
    end = _first(ref, {later, earlier})
    got = _run(lm, mode, use_cache, max_new_tokens=N, eos_token_id=[later, earlier])
    assert got.tolist() == ref[:end + 1].tolist(), (
        f"{lm.name} ({mode}): EOS ids [{later}, {earlier}]: got {got.tolist()}, expected {ref[:end + 1].tolist()}")


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "nocache"])
def test_min_new_tokens_holds_eos_back_exactly_that_long(lm, use_cache):
    """An off-by-one in the min-length guard lets EOS end generation a token early (serving engines have shipped
    it). EOS = the greedy token at new position j: with min_new_tokens = j the call ends there (j + 1 tokens);
    with j + 1 it may not, and the first j tokens stay the reference's."""
    ref = _reference(lm, "greedy", use_cache)
    stop = int(ref[4])
    j = _first(ref, {stop})
    at = _run(lm, "greedy", use_cache, max_new_tokens=N, min_new_tokens=j, eos_token_id=stop)
    assert at.tolist() == ref[:j + 1].tolist(), (
        f"{lm.name}: min_new_tokens={j}, EOS {stop} at new token {j}: expected it to end there, got {at.tolist()}")
    held = _run(lm, "greedy", use_cache, max_new_tokens=N, min_new_tokens=j + 1, eos_token_id=stop)
    assert held[:j].tolist() == ref[:j].tolist() and len(held) >= j + 1 and int(held[j]) != stop, (
        f"{lm.name}: min_new_tokens={j + 1}: EOS {stop} must be held back at new token {j}; got {held.tolist()}")


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "nocache"])
@pytest.mark.parametrize("mode", ["greedy", "sample", "beams"])
def test_max_new_tokens_and_max_length_are_exact(lm, mode, use_cache):
    """With EOS held back, max_new_tokens new tokens exactly, and max_length tokens in all, prompt included."""
    prompt_len = lm.encode(PROMPTS[1])["input_ids"].shape[1]
    new = _run(lm, mode, use_cache, max_new_tokens=N, min_new_tokens=N)
    assert len(new) == N, f"{lm.name} ({mode}): max_new_tokens={N} gave {len(new)} new tokens"
    torch.manual_seed(7)
    out = lm.generate(PROMPTS[1], use_cache=use_cache, max_length=prompt_len + 5, min_length=prompt_len + 5,
                      **MODES[mode])
    assert out.shape[1] == prompt_len + 5, f"{lm.name} ({mode}): max_length={prompt_len + 5} gave {out.shape[1]}"


def test_beams_end_at_eos_and_never_run_past_max_new_tokens(lm):
    """Beam search with an EOS id: no returned beam runs past max_new_tokens, and none holds a token after its EOS
    other than filler -- the pad id, or the EOS itself where the pad id is 0: generate() fills with
    ``pad_token_id or eos_token_id[0]``, and 0 is falsy (seen on 5.25.0; a pad id of 0 is common, GPT-2's and
    phi-2's tokenizers pad with id 0 when given their EOS as pad)."""
    ref = _reference(lm, "beams", True)
    stop = int(ref[2])
    torch.manual_seed(7)
    prompt_len = lm.encode(PROMPTS[1])["input_ids"].shape[1]
    out = lm.generate(PROMPTS[1], max_new_tokens=N, eos_token_id=stop, num_beams=3, num_return_sequences=3,
                      pad_token_id=lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else stop)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else stop
    assert out.shape[1] - prompt_len <= N, f"{lm.name}: a beam of {out.shape[1] - prompt_len} new tokens"
    for row in out[:, prompt_len:].tolist():
        if stop in row:
            after = row[row.index(stop) + 1:]
            assert all(t in (pad, stop) for t in after), f"{lm.name}: tokens after EOS {stop} in a beam: {row}"


def test_stop_strings_end_generation_at_the_token_that_completes_them(lm):
    """stop_strings: the call ends with the token whose text completes the string, not before, not after."""
    ref = _reference(lm, "greedy", True)
    decode = lm.tokenizer.decode
    stop = decode(ref[2:4]).strip() or decode(ref[2:6]).strip()
    if not stop:
        pytest.skip(f"{lm.name}: the greedy continuation is whitespace ({decode(ref)!r}): no stop string to pick")
    end = next(k for k in range(1, N + 1) if stop in decode(ref[:k]))
    torch.manual_seed(7)
    prompt_len = lm.encode(PROMPTS[1])["input_ids"].shape[1]
    got = lm.generate(PROMPTS[1], max_new_tokens=N, stop_strings=[stop], tokenizer=lm.tokenizer)[0, prompt_len:]
    assert got.tolist() == ref[:end].tolist(), (
        f"{lm.name}: stop string {stop!r} is complete after {end} tokens; got {got.tolist()} "
        f"({decode(got)!r}), expected {ref[:end].tolist()}")


def test_the_cache_has_the_formulas_size_after_every_step(lm):
    """After 1, 2, 3 and 4 new tokens the cache generate() returns holds exactly the formula's bytes for the
    positions it has seen (prompt + new - 1): an SSM's state the same at every step, an attention cache one
    position more each step, a hybrid the sum -- a state that grows by a column a token while the outputs stay
    right (a recording left on) fails here. On a GPU, what else stays allocated does not grow with the steps."""
    arch = lm.spec.arch
    if arch.cache_bytes is None:
        pytest.skip(f"{lm.name}: {arch.key} has no cache-size formula")
    ids = lm.encode(PROMPTS[0])["input_ids"]
    sizes, resident = [], []
    for new in range(1, 5):
        out = lm.generate(ids, max_new_tokens=new, min_new_tokens=new, return_dict_in_generate=True)
        try:
            cache = find_cache(out)
        except LookupError:
            pytest.skip(f"{lm.name}: generate() returns no cache for this class here (fields: {list(out.keys())})")
        measured = tensor_bytes(cache)
        expected = expected_cache_bytes(arch, lm.model.config, ids.shape[1] + new - 1, lm.dtype)
        sizes.append((new, measured, expected))
        del out, cache
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
            resident.append(torch.cuda.memory_allocated(lm.device))
    wrong = [(n, m, e) for n, m, e in sizes if m != e]
    assert not wrong, f"{lm.name}: cache bytes after n new tokens (n, measured, formula): {wrong}"
    if resident:
        assert resident[-1] <= resident[1], f"{lm.name}: allocated memory grew with the steps: {resident}"


def _scores(lm, use_cache: bool, **kwargs):
    torch.manual_seed(7)
    return lm.generate(PROMPTS[0], use_cache=use_cache, max_new_tokens=N, min_new_tokens=N,
                       return_dict_in_generate=True, output_scores=True, output_logits=True, **kwargs)


def test_scores_and_logits_of_a_cached_run_equal_an_uncached_runs(lm):
    """output_logits (the model's) and output_scores (after the processors: here a repetition penalty and no
    repeated bigrams) step by step, with the cache and without: equal within the dtype's tolerance -- logits, not
    tokens (a wrong state can leave the greedy tokens as they were)."""
    kwargs = dict(repetition_penalty=1.3, no_repeat_ngram_size=2)
    cached, plain = _scores(lm, True, **kwargs), _scores(lm, False, **kwargs)
    assert cached.sequences.tolist() == plain.sequences.tolist(), f"{lm.name}: tokens differ with the cache"
    for field in ("logits", "scores"):
        for step, (a, b) in enumerate(zip(getattr(cached, field), getattr(plain, field), strict=True)):
            finite = torch.isfinite(b)
            assert torch.equal(finite, torch.isfinite(a)), f"{lm.name}: {field} step {step}: other tokens banned"
            assert_logits_close(f"{lm.name}: {field} at step {step}, cached vs uncached", a[finite], b[finite],
                                lm.dtype, lm.noise_floor)


def test_processors_act_on_exactly_the_logits_they_are_given(lm):
    """Repetition penalty, no repeated n-grams, bad words and suppressed tokens, applied by generate() to the
    model's logits at each step, give the scores the same processors give when handed those logits and the
    sequence so far: a processor that read the attention cache's layout, say, would break only SSMs here."""
    prompt = lm.encode(PROMPTS[0])["input_ids"]
    ref = lm.generate(prompt, max_new_tokens=N, min_new_tokens=N)[0, prompt.shape[1]:]
    bad = [[int(ref[2])], [int(ref[4]), int(ref[5])]]
    suppress = [int(ref[1])]
    out = lm.generate(prompt, max_new_tokens=N, min_new_tokens=N, return_dict_in_generate=True, output_scores=True,
                      output_logits=True, repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=bad,
                      suppress_tokens=suppress)
    eos = lm.model.generation_config.eos_token_id
    processors = LogitsProcessorList([
        MinNewTokensLengthLogitsProcessor(prompt.shape[1], N, eos, device=lm.device),
        NoRepeatNGramLogitsProcessor(2), NoBadWordsLogitsProcessor(bad, eos_token_id=None),
        RepetitionPenaltyLogitsProcessor(1.5), SuppressTokensLogitsProcessor(suppress, device=lm.device)])
    for step, (logits, scores) in enumerate(zip(out.logits, out.scores, strict=True)):
        so_far = out.sequences[:, : prompt.shape[1] + step]
        mine = logits.clone()
        for processor in processors:  # each by hand: generate()'s own plumbing is what is checked
            mine = processor(so_far, mine)
        assert torch.equal(torch.isinf(mine), torch.isinf(scores)), (
            f"{lm.name}: step {step}: tokens banned by generate() and by the processors differ: "
            f"{torch.nonzero(torch.isinf(mine) != torch.isinf(scores)).tolist()[:5]}")
        finite = torch.isfinite(scores)
        assert torch.allclose(mine[finite], scores[finite]), f"{lm.name}: step {step}: processed scores differ"
    generated = out.sequences[0, prompt.shape[1]:].tolist()
    assert suppress[0] not in generated and bad[0][0] not in generated, f"{lm.name}: a banned token: {generated}"


def test_seeded_sampling_is_the_same_with_and_without_the_cache(lm):
    with_cache = _run(lm, "sample", True, max_new_tokens=N, min_new_tokens=N)
    without = _run(lm, "sample", False, max_new_tokens=N, min_new_tokens=N)
    again = _run(lm, "sample", True, max_new_tokens=N, min_new_tokens=N)
    assert with_cache.tolist() == again.tolist(), f"{lm.name}: the same seed sampled differently"
    assert with_cache.tolist() == without.tolist(), (
        f"{lm.name}: seeded sampling with the cache {with_cache.tolist()} vs without {without.tolist()}")


@pytest.mark.needs("boundaries")
def test_decode_on_both_sides_of_every_block_boundary(lm):
    """Prompts of b - 1, b and b + 1 tokens for every block boundary b the architecture has (its conv window,
    its SSD chunk, a rotary-scaling threshold: ``Arch.boundaries``), then three steps through the cache: each
    step's logits equal the full forward pass there -- logits, not tokens, so a state wrong by a little at the
    boundary cannot hide behind unchanged greedy tokens."""
    from transformers import LogitsProcessorList

    from tests.conformance.test_cache import ForceTokens

    lengths = lm.spec.arch.boundary_lengths(lm.model.config)
    # a natural start, then seeded random tokens up to the last boundary (a full-size Mamba-2 chunk: 256 tokens;
    # Llama 3's rotary-scaling threshold: 8192): every token after the prompt is forced, so any sequence will do,
    # and generating 8k tokens would cost minutes
    ids = lm.generate(PROMPTS[2], max_new_tokens=24, min_new_tokens=24)
    need = max(lengths) + 4 - ids.shape[1]
    if need > 0:
        filler = torch.randint(0, lm.model.config.vocab_size, (1, need), generator=torch.Generator().manual_seed(0))
        ids = torch.cat([ids, filler.to(ids.device)], dim=1)
    for b in lengths:
        for length in sorted({max(1, b - 1), b, b + 1}):
            seq = ids[:, : length + 3]
            full = lm.logits(seq, use_cache=False)
            rest = seq[:, length:]
            out = lm.generate(seq[:, :length], max_new_tokens=3, min_new_tokens=3, use_cache=True,
                              logits_processor=LogitsProcessorList([ForceTokens(rest)]),
                              return_dict_in_generate=True, output_logits=True)
            assert torch.equal(out.sequences, seq), f"{lm.name}: forcing failed at a {length}-token prompt"
            # each step against its own position's floor: past a chunk boundary a random-weight stack can be ten
            # times more sensitive to rounding than at the short prompt the noise floor is read at
            floors = lm.rounding_floors(seq, full, range(length - 1, length + 2))
            for step, floor in enumerate(floors):
                assert_logits_close(f"{lm.name}: decode step {step + 1} of 3 after a {length}-token prompt (boundary "
                                    f"{b}) vs the full forward pass", out.logits[step], full[:, length - 1 + step],
                                    lm.dtype, max(lm.noise_floor, floor))
