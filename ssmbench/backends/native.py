"""``native``: the authors' implementation, mamba-ssm's ``MambaLMHeadModel`` on the very tensors transformers
loaded, decoding with its own CUDA graph (``ssmbench.native``); calibration times the authors'
``generate(cg=True)`` itself."""

from __future__ import annotations

from .. import native
from ..cache import tensor_bytes
from .base import Backend, BackendUnavailable, decoder_call

NATIVE = native.NATIVE


class Native(Backend):
    name = "native"
    generate_kwargs = None

    def unavailable(self, lm) -> str | None:
        why = native.unavailable(lm.spec.arch, lm.device)
        return f"{lm.name}: {why}" if why else None

    def decode_path(self, lm) -> str:
        why = self.unavailable(lm)
        if why:
            raise BackendUnavailable(why)
        return NATIVE

    def call(self, lm, ids, new_tokens, runs, nvml=None, energy=True):
        decoder = native.native_decoder(lm)

        def state() -> None:
            runs.cache_bytes = tensor_bytes(decoder.state_tensors()) or None

        return decoder_call(lm, ids, new_tokens, runs, decoder, state, nvml, energy)

    def plain_call(self, lm, ids, new_tokens) -> None:
        native.native_decoder(lm).authors_generate(ids, new_tokens)  # generate(cg=True), not the suite's loop

    def release(self, lm, next_backend) -> None:
        native.drop(lm.model)


BACKEND = Native()
