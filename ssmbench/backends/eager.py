"""``eager``: transformers' default ``generate()``, what a user's plain call runs."""

from __future__ import annotations

from ..point import TRANSFORMERS_EAGER
from .base import Backend


class Eager(Backend):
    name = "eager"
    generate_kwargs: dict = {}
    needs_gpu = False

    def decode_path(self, lm) -> str:
        return TRANSFORMERS_EAGER


BACKEND = Eager()
