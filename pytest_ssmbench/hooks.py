"""The suite's own hook, for plugins beside it (``pytest_ssmbench.inject`` is one)."""


def pytest_ssmbench_model_loaded(config, lm):
    """Called after the suite loads a model (``ssmbench.loading.LoadedModel``), before any test uses it."""
