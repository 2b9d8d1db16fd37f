"""The tiny checkpoints' criterion (ssmbench.tiny.degenerate) refuses each kind of degenerate generation: few
distinct tokens, a continuation that repeats itself, two prompts with one continuation, and a near tie."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ssmbench.inputs import PROMPTS
from ssmbench.tiny import MIN_MARGIN, degenerate

pytestmark = pytest.mark.selftest
NEW, VOCAB = 24, 512


class FakeLM:
    """generate() returns the given continuations and, as scores, logits with the chosen token ahead by ``margin``."""

    def __init__(self, rows: torch.Tensor, margin: float = 5.0):
        self.rows, self.margin = rows, margin

    def generate(self, prompts, **kwargs):
        assert kwargs["output_scores"] and kwargs["return_dict_in_generate"]
        scores = []
        for step in range(NEW):
            s = torch.zeros(len(prompts), VOCAB)
            s[:, 0] = float("-inf")  # EOS held back by min_new_tokens
            s[torch.arange(len(prompts)), self.rows[:, step]] = self.margin
            scores.append(s)
        return SimpleNamespace(sequences=torch.cat([torch.zeros(len(prompts), 3, dtype=torch.long), self.rows], 1),
                               scores=tuple(scores))


def varied() -> torch.Tensor:
    return torch.arange(len(PROMPTS) * NEW).reshape(len(PROMPTS), NEW) + 1


def test_varied_decisive_generations_pass():
    assert degenerate(FakeLM(varied())) is None


def test_a_near_tie_fails():
    assert "near tie" in degenerate(FakeLM(varied(), margin=MIN_MARGIN / 2))


def test_few_tokens_a_repeating_continuation_and_a_shared_one_fail():
    assert "distinct tokens" in degenerate(FakeLM(varied() % 7 + 1))
    rows = varied()
    rows[1] = 5
    assert "repeats itself" in degenerate(FakeLM(rows))
    rows = varied()
    rows[1] = rows[0]
    assert "share a continuation" in degenerate(FakeLM(rows))
