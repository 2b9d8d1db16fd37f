"""The ``ssmbench`` command's subcommands, one module each (``main(argv) -> exit status``)."""

from __future__ import annotations

# name on the command line -> (module, what it does)
COMMANDS = {
    "summarize": ("summarize", "a run's summary from its points files (several: one run); --write merges them"),
    "report": ("summarize", "the scaling report of points files: plots and README.md into a folder (--report DIR)"),
    "fleet": ("fleet", "several devices' baselines side by side in one HTML page"),
    "plain": ("plain", "a point measured plainly in a fresh process: plain generate(), a clock, the allocator's peak"),
    "budget": ("budget", "where a sweep's time went, by phase (model build, warm-up, rounds, calibration, ...)"),
    "merge": ("merge", "pytest-benchmark files of one device as one baseline"),
    "project": ("project", "roofline projections of a measured run onto another device"),
    "version-sweep": ("version_sweep", "the quick tier on many transformers releases; the README's table"),
    "gate-allowances": ("gate_allowances", "the regression gate's between-machine allowances from two gate runs"),
    "make-tiny": ("make_tiny", "rebuild the embedded tiny checkpoints"),
    "profile-step": ("profile_step", "one decode step of a full-size model under the torch profiler (GPU)"),
    "native-probe": ("native_probe", "mamba-ssm's own decode against transformers' on the same weights (GPU)"),
    "options-doc": ("options_doc", "the options reference (docs/options.md) from the plugin's definitions"),
}
