"""A deliberate fault for the block-boundary check: every SSM mixer's output off by 0.1 % in one-token decode steps
only (prefill and the full forward untouched). From the repository root:

    PYTHONPATH=baselines/h100/quick/cpu-check python -m pytest -p decode_fault -m quick \\
        tests/conformance/test_contract.py -k boundary --ssm-archs mamba,mamba2,bamba

fails all three (decode_fault.out)."""


def pytest_ssmbench_model_loaded(config, lm):
    from ssmbench.inject import ssm_mixers

    def fault(_module, args, kwargs, out):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[1] != 1:
            return None
        return (out[0] * 1.001, *out[1:]) if isinstance(out, tuple) else out * 1.001

    for mixer in ssm_mixers(lm):  # the injection plugin's mixers: every layer of a mamba* kind
        mixer.register_forward_hook(fault, with_kwargs=True)
