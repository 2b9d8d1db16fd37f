"""The suite's pytest plugin (entry point ``pytest11: ssmbench``), on top of the ``ssmbench`` machinery.

plugin.py owns every hook and calls the module of each concern in a fixed order: options (command line and
ini), settings (device, model set, how each test runs), fixtures (models, sweep settings), sweep
(parametrization, measuring a point), baselines (pytest-benchmark's storage and compare), summary (the
terminal table and report), xdist (GPU pinning and grouping)."""
