"""Running a layer kind against its reference: what a module saw and gave in a run, and its reference's output
for the same input, at the kind's first and last layer."""

from __future__ import annotations

import torch


def capture(module: torch.nn.Module, run) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``run()`` and return the first input and first output ``module`` saw in it."""
    seen: dict[str, torch.Tensor] = {}

    def hook(mod, args, kwargs, output):
        if "input" not in seen:
            # a layer takes hidden_states; a whole model (a kind that checks the model end to end) input_ids
            seen["input"] = args[0] if args else kwargs.get("hidden_states", kwargs.get("input_ids"))
            logits = getattr(output, "logits", None)  # a model's output: its logits
            seen["output"] = logits if logits is not None else output[0] if isinstance(output, tuple) else output

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen["input"].detach(), seen["output"].detach()

def layer_pairs(model: torch.nn.Module, layer, run) -> dict[str, tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """For one kind of layer (``Arch.layers[kind]``): its first and its last layer in ``model``, each with what it
    output in ``run()`` and what its float64 reference gives for the input it saw there (once where the kind has
    one layer: its first is its last)."""
    found = layer.find(model)
    if not found:
        raise LookupError("no layer of this kind in the model")
    out = {}
    for where, (module, expected_of) in ({"first": found[0], "last": found[-1]} if len(found) > 1
                                         else {"first": found[0]}).items():
        with torch.no_grad():
            hidden, output = capture(module, run)
            out[where] = (module, output, expected_of(hidden))
    return out
