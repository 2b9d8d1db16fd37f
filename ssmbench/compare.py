"""How the suite compares generations and logits: same tokens, or a near tie in the reference scores at the
first difference (the transformers convention); logits within a per-dtype relative tolerance."""

from __future__ import annotations

import torch

# max |actual - expected| / max |expected| allowed for logits computed two ways in one dtype.
LOGITS_RTOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
# A difference between greedy tokens is accepted only where the reference's top-2 scores are this close
# (relative to the scores' scale): the two paths then legitimately round to different argmaxes.
NEAR_TIE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


# Tolerances never go below this multiple of the model's own noise floor: the disagreement between two
# equally correct computations of the same logits (see LoadedModel.noise_floor). Deep random-weight stacks
# amplify rounding layer by layer (synthetic mamba-2.8b: ~1 % in float32 at 64 layers), so a fixed dtype
# tolerance would flag correct code there; on the tiny models the floor is ~0 and the dtype tolerance rules.
NOISE_FACTOR = 10.0
# A relative tolerance this wide passes logits that have nothing to do with each other (a sign flip is 2, a
# shuffled vocabulary about 1): a comparison that cannot fail. Synthetic mamba-2.8b in bfloat16 is there -- its
# random 64-layer stack is chaotic at that precision: a prompt alone and in a batch of two differ by 126 %, and
# bfloat16 against float32 by 130 % (a CPU, 11 tokens). --dtype auto checks synthetic models in float32 for that
# reason; under --dtype bfloat16 their logit and token checks are skipped, saying so, instead of passing anything.
POWER_LIMIT = 0.5


class Mismatch(AssertionError):
    pass


class Powerless(Exception):
    """A comparison that could not fail here: the model's own noise floor puts the tolerance past
    ``POWER_LIMIT``. The plugin reports the test as skipped with this message, never as passed."""


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    a, b = a.flatten().cpu(), b.flatten().cpu()
    n = min(len(a), len(b))
    diff = (a[:n] != b[:n]).nonzero()
    if len(diff):
        return int(diff[0])
    return None if len(a) == len(b) else n


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double().cpu(), expected.double().cpu()
    if not torch.isfinite(actual).all() or not torch.isfinite(expected).all():
        return float("inf")
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def check_noise_floor(name: str, source: str, floor: float,
                      what: str = "a prompt alone and the same prompt in a batch of two give logits") -> float:
    """A noise floor only random weights may have: a tiny or real checkpoint whose prompt alone and in a batch of
    two differ this much (or whose logits a rounding-sized change of the input moves this much) has a
    batch-dependence bug, a broken kernel or an unstable computation, which ``Powerless`` must not excuse."""
    if source != "synthetic" and NOISE_FACTOR * floor >= POWER_LIMIT:
        raise Mismatch(f"{name}: {what} {floor * 100:.1f} % apart: a {source} checkpoint does not do that (a "
                       "batch-dependence bug, a broken kernel or an unstable computation); only random-weight "
                       "synthetic models are excused as chaotic")
    return floor


def tolerance(table: dict[torch.dtype, float], dtype: torch.dtype, noise_floor: float) -> float:
    """The dtype's tolerance, or ``NOISE_FACTOR`` times the model's noise floor where that is wider; raises
    ``Powerless`` where it is too wide for any comparison to fail."""
    tol = max(table[dtype], NOISE_FACTOR * noise_floor)
    if tol >= POWER_LIMIT:
        name = str(dtype).replace("torch.", "")
        raise Powerless(
            f"no comparison has power here: two equally correct computations of this model's logits (a prompt "
            f"alone and in a batch of two) differ by {noise_floor * 100:.0f} % in {name}, so the tolerance would be "
            f"{tol * 100:.0f} % (random weights this deep are chaotic at this precision); the tiny checkpoints and "
            "float32 runs check this")
    return tol


def assert_logits_close(what: str, actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
                        noise_floor: float = 0.0) -> None:
    err = relative_error(actual, expected)
    tol = tolerance(LOGITS_RTOL, dtype, noise_floor)
    if not err <= tol:
        flat = (actual.double().cpu() - expected.double().cpu()).abs().flatten()
        idx = int(flat.nan_to_num(float("inf")).argmax())
        pos = list(torch.unravel_index(torch.tensor(idx), actual.shape))
        raise Mismatch(
            f"{what}: relative error {err:.3g} > {tol:.3g} ({dtype}, noise floor {noise_floor:.2g}); "
            f"worst at index {[int(p) for p in pos]}: "
            f"{actual.flatten()[idx].item():.6g} vs expected {expected.flatten()[idx].item():.6g}"
        )


def assert_same_generation(
    what: str,
    actual: torch.Tensor,
    expected: torch.Tensor,
    expected_scores: list[torch.Tensor] | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    decode=None,
    noise_floor: float = 0.0,
) -> None:
    """``actual`` and ``expected`` are 1-D new-token sequences. ``expected_scores[i]`` holds the reference's
    logits (vocab,) for new token i; with them a divergence at a near tie is accepted (``Powerless`` where the
    noise floor would accept any)."""
    near_tie = tolerance(NEAR_TIE, dtype, noise_floor)
    pos = first_difference(actual, expected)
    if pos is None:
        return
    a_tok = int(actual[pos]) if pos < len(actual) else None
    e_tok = int(expected[pos]) if pos < len(expected) else None
    detail = ""
    if expected_scores is not None and a_tok is not None and e_tok is not None and pos < len(expected_scores):
        scores = expected_scores[pos].double().cpu().flatten()
        gap = float(scores[e_tok] - scores[a_tok])
        scale = float(scores.abs().max().clamp_min(1e-12))
        if gap / scale <= near_tie:
            return
        detail = (f"; reference scores there: {scores[e_tok]:.6g} for {e_tok}, {scores[a_tok]:.6g} for {a_tok} "
                  f"(gap {gap / scale:.2g} of scale; noise floor {noise_floor:.2g})")
    text = ""
    if decode is not None:
        text = f" (context {decode(expected[:pos].tolist())!r})"
    raise Mismatch(
        f"{what}: first difference at new token {pos}: got {a_tok}, expected {e_tok}{detail}{text}; "
        f"got {actual.tolist()}, expected {expected.tolist()}"
    )
