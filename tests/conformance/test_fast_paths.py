"""Fast paths compute what the default path computes: Mamba's CUDA kernels against transformers' reference
PyTorch loop, the compiled decode backend (static cache), the suite's CUDA-graph decode and the authors' own
model (mamba-ssm's MambaLMHeadModel, the native backend) against eager decoding."""

from __future__ import annotations

import pytest
import torch

from ssmbench import backends, impl, native
from ssmbench.backends import decode_path
from ssmbench.backends.graphed import graphed_decoder
from ssmbench.bench import prompt_ids
from ssmbench.compare import assert_logits_close, assert_same_generation
from ssmbench.inputs import PROMPTS
from ssmbench.point import SUITE_GRAPH

pytestmark = pytest.mark.conformance

NEW = 16
LONG = 2048  # a long prompt: a backend's state after a long prefill (the gate's decode context)


def _greedy(lm, prompt, **kwargs):
    """Eager greedy generate of exactly NEW tokens from text prompts or token ids, with the logits."""
    return lm.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, return_dict_in_generate=True,
                       output_logits=True, **kwargs)


@pytest.mark.family("ssm", "hybrid")
@pytest.mark.needs("kernels")
def test_kernels_match_reference_path(lm):
    arch = lm.spec.arch
    if not impl.kernels_available(arch, lm.device):
        pytest.skip(f"{lm.name}: no CUDA kernels run for {arch.model_type} here "
                    f"({impl.model_implementation(lm.model, arch)}, device {lm.device.type}); install mamba-ssm")
    unforced = impl.reference_verified(arch, lm.device)
    if unforced:
        pytest.skip(f"{lm.name}: the reference path cannot be forced on this transformers: {unforced}")
    enc = lm.encode(PROMPTS[:2])
    with torch.no_grad():
        with impl.record_kernel_calls() as fast_calls:
            fast_logits = lm.model(**enc).logits
            fast = _greedy(lm, PROMPTS[0])
        with impl.reference_path(arch.kernels), impl.record_kernel_calls() as ref_calls:
            ref_logits = lm.model(**enc).logits
            ref = _greedy(lm, PROMPTS[0])
    # The comparison has power only if the two sides ran different code: kernels on one, none on the other.
    assert fast_calls.calls, f"{lm.name}: no kernel function was called on the kernel side"
    assert not ref_calls.calls, f"{lm.name}: kernels still called on the reference side: {sorted(set(ref_calls.calls))}"
    assert_logits_close(f"{lm.name}: prefill logits, kernels vs reference loop", fast_logits, ref_logits, lm.dtype,
                        lm.noise_floor)
    plen = lm.encode(PROMPTS[0])["input_ids"].shape[1]
    assert_same_generation(f"{lm.name}: greedy decode, kernels vs reference loop", fast.sequences[0, plen:],
                           ref.sequences[0, plen:], [s[0] for s in ref.logits], lm.dtype, lm.tokenizer.decode,
                           lm.noise_floor)


@pytest.mark.family("ssm")
@pytest.mark.needs("suite_graph")
def test_graphed_decode_matches_eager(lm):
    """The suite's CUDA-graph decode (captured on a GPU; on a CPU the same static-state loop, uncaptured)
    continues prompts exactly as eager generate() does -- including later calls, which reuse the captured
    graph with a new prompt's state copied in, and a batch of two."""
    decoder = graphed_decoder(lm)
    _same_greedy_continuations(lm, decoder.generate,
                               f"suite CUDA graph ({'captured' if decoder.capture else 'uncaptured'})")


def _same_greedy_continuations(lm, generate, what: str) -> None:
    """``generate(ids, NEW)`` continues prompts with eager generate()'s greedy tokens. (context, batch): the
    first call captures a graph; the others reuse it, recapture for a longer prompt, capture another batch
    size, and continue a long prompt."""
    for context, batch in [(9, 1), (23, 1), (5, 1), (14, 2), (LONG, 1)]:
        ids = prompt_ids(lm, context, batch=batch, seed=1)
        with torch.no_grad():
            eager = _greedy(lm, ids)
            tokens = generate(ids, NEW)
        for row in range(batch):
            assert_same_generation(
                f"{lm.name}: greedy, {what} vs eager, context {context}, batch {batch}, row {row}", tokens[row],
                eager.sequences[row, context:], [s[row] for s in eager.logits], lm.dtype, lm.tokenizer.decode,
                lm.noise_floor)


@pytest.mark.family("ssm")
@pytest.mark.needs("native")
def test_native_matches_transformers(lm):
    """The native backend: mamba-ssm's MambaLMHeadModel on transformers' own tensors gives the same prefill
    logits and, through its CUDA-graph decode, the same greedy tokens as eager generate() -- later calls
    reusing the captured graph, a longer prompt recapturing it, and a batch of two."""
    why = native.unavailable(lm.spec.arch, lm.device)
    if why:
        pytest.skip(f"{lm.name}: {why}")
    decoder = native.native_decoder(lm)
    ids = lm.encode(PROMPTS[0])["input_ids"]
    with torch.no_grad():
        theirs = lm.model(input_ids=ids).logits
    assert_logits_close(f"{lm.name}: prefill logits, mamba-ssm's model vs transformers'", decoder.logits(ids), theirs,
                        lm.dtype, lm.noise_floor)
    _same_greedy_continuations(lm, decoder.generate, "mamba-ssm's CUDA-graph decode (native)")


@pytest.mark.heavy  # compiles the decode step: ~40 s per full-size model
@pytest.mark.gpu_only("the compiled backend needs a GPU (transformers compiles generate() on CUDA only)")
def test_compiled_backend_matches_eager(lm):
    try:
        path = decode_path(lm, "compiled")
    except ValueError as exc:  # no compiled decode for this class here: nothing to compare
        pytest.skip(str(exc))
    if path == SUITE_GRAPH:
        pytest.skip(f"{lm.name}: this transformers offers no compiled decode for Mamba (static cache ignored), so "
                    "'compiled' runs the suite's CUDA graph, checked by test_graphed_decode_matches_eager")
    for ids in (lm.encode(PROMPTS[1])["input_ids"], prompt_ids(lm, LONG, seed=1)):  # a short and a long prompt
        plen = ids.shape[1]
        eager = _greedy(lm, ids)
        compiled = _greedy(lm, ids, **backends.get("compiled").generate_kwargs)
        assert_same_generation(f"{lm.name}: greedy, compiled (static cache) vs eager, prompt {plen}",
                               compiled.sequences[0, plen:], eager.sequences[0, plen:], [s[0] for s in eager.logits],
                               lm.dtype, lm.tokenizer.decode, lm.noise_floor)
        assert_logits_close(f"{lm.name}: logits of every step, compiled vs eager, prompt {plen}",
                            torch.stack(compiled.logits, 1), torch.stack(eager.logits, 1), lm.dtype, lm.noise_floor)
