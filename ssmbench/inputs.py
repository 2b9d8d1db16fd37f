"""Prompts shared by the tests and benchmarks (fixed, so runs are comparable)."""

QUICKSTART_PROMPT = "The key insight of Mamba compared to Transformers is"

PROMPTS = [
    "The key insight of Mamba compared to Transformers is",
    "Hello my name is",
    "Today, the engineer",
    "Why does the cache",
]

# Different lengths on purpose: batching them needs left padding.
RAGGED_PROMPTS = [
    "Hello",
    "The state space model scans the sequence in linear time because",
    "In practice, the GPU",
]
