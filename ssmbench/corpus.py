"""A small seeded text corpus that the embedded tiny checkpoints are trained on.

The text is generated from a little grammar, so the repository ships no third-party prose and the tiny
models learn enough structure to produce varied, non-degenerate greedy continuations.
"""

from __future__ import annotations

import random

SUBJECTS = [
    "the model", "a transformer", "the state space model", "mamba", "the attention layer", "the cache",
    "every token", "the engineer", "the benchmark", "the GPU", "a long prompt", "the scan", "the decoder",
    "our team", "the kernel", "the tokenizer", "each layer", "the test suite", "the workstation",
]
VERBS = [
    "reads", "writes", "keeps", "compares", "measures", "stores", "streams", "computes", "checks",
    "generates", "loads", "updates", "predicts", "remembers", "forgets", "scales", "copies", "saves",
]
OBJECTS = [
    "the hidden state", "a new token", "every weight", "the whole context", "a short sentence",
    "the next word", "its memory", "the logits", "one value per channel", "the key and value tensors",
    "a fixed budget", "the prompt", "the batch", "a quiet answer", "the recurrent state", "the output",
]
ADVERBIALS = [
    "in linear time", "at every step", "without padding", "on a single GPU", "with little memory",
    "before the deadline", "after the prefill", "during decoding", "for long sequences", "twice as fast",
    "in bfloat16", "with care", "from left to right", "under a fixed seed", "at sixteen thousand tokens",
]
CONNECTIVES = ["and then", "because", "while", "so", "but", "although", "whenever"]
OPENERS = [
    "Today", "In practice", "At first", "Later", "On a DGX Spark", "In the quickstart", "By design",
    "For this reason", "In the end", "Sometimes", "Once again", "After lunch",
]
QUESTIONS = [
    "Why does {s} {v} {o}?", "Does {s} {v} {o} {a}?", "Who {v} {o}?", "How often does {s} {v} {o}?",
]
FACTS = [
    "Mamba keeps a fixed state, while attention keeps every past key and value.",
    "A transformer reads the whole context for each new token.",
    "The state space model scans the sequence in linear time.",
    "Memory for the cache grows with the context, unless the model is recurrent.",
    "The key insight of Mamba compared to Transformers is a selective state that fits in memory.",
    "Hello my name is Tiny and I am a small model that was trained on a small text.",
]


def _clause(rng: random.Random) -> str:
    s, v, o = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
    if rng.random() < 0.5:
        return f"{s} {v} {o} {rng.choice(ADVERBIALS)}"
    return f"{s} {v} {o}"


def _sentence(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.1:
        return rng.choice(FACTS)
    if r < 0.2:
        q = rng.choice(QUESTIONS)
        return q.format(s=rng.choice(SUBJECTS), v=rng.choice(VERBS).rstrip("s"), o=rng.choice(OBJECTS),
                        a=rng.choice(ADVERBIALS))
    text = _clause(rng)
    if rng.random() < 0.4:
        text = f"{text} {rng.choice(CONNECTIVES)} {_clause(rng)}"
    if rng.random() < 0.3:
        text = f"{rng.choice(OPENERS)}, {text}"
    return text[0].upper() + text[1:] + "."


def make_corpus(n_paragraphs: int = 400, seed: int = 0) -> list[str]:
    """Paragraphs of 2-6 sentences; deterministic for a given seed."""
    rng = random.Random(seed)
    return [" ".join(_sentence(rng) for _ in range(rng.randint(2, 6))) for _ in range(n_paragraphs)]
