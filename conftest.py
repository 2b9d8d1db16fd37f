"""Root conftest: the suite's plugin and fixtures live in fixtures/ on top of the ssmbench package."""

pytest_plugins = ["fixtures.plugin", "fixtures.parallel", "fixtures.models", "fixtures.benchmarking"]
