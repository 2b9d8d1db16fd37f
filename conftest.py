"""Root conftest: loads the suite's plugin in a checkout where it is not installed (``pip install -e .``
registers it as the ``pytest11`` entry point ``ssmbench``; a bare checkout, such as a GPU machine's copy, runs
it from here)."""

from importlib.metadata import entry_points

if not any(ep.name == "ssmbench" and ep.value.startswith("pytest_ssmbench") for ep in entry_points(group="pytest11")):
    pytest_plugins = ["pytest_ssmbench.plugin"]
