"""Fixtures: the model under test (one resident at a time, freed before the next loads) and the sweep's
settings."""

from __future__ import annotations

import pytest

from ssmbench.compat import known_differences
from ssmbench.loading import LoadedModel, load
from ssmbench.registry import ModelSpec

from .settings import plan_for, settings
from .sweep import BenchSettings, bench_settings


class ModelPool:
    def __init__(self) -> None:
        self.current: LoadedModel | None = None

    def get(self, spec: ModelSpec, device, dtype) -> LoadedModel:
        if self.current is not None and (self.current.spec, self.current.dtype) == (spec, dtype):
            return self.current
        self.release()
        self.current = load(spec, device, dtype)
        return self.current

    def release(self) -> None:
        if self.current is not None:
            self.current.free()
            self.current = None


@pytest.fixture(scope="session")
def model_pool():
    pool = ModelPool()
    yield pool
    pool.release()


@pytest.fixture(scope="session")
def spec(request: pytest.FixtureRequest) -> ModelSpec:
    """The model a test runs on (parametrized by the plugin; whether and how it runs: ``settings.plan``)."""
    return request.param


@pytest.fixture
def lm(spec: ModelSpec, model_pool: ModelPool, request: pytest.FixtureRequest) -> LoadedModel:
    """The model under test, in the dtype ``settings.plan`` gives. Tests are ordered by spec, so each model
    loads once per dtype."""
    dtype = plan_for(request.config, spec, request.node, request.node.originalname).dtype
    return model_pool.get(spec, settings(request.config).device, dtype)


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> BenchSettings:
    return bench_settings(request.config)


def xfail_known(request: pytest.FixtureRequest, lm: LoadedModel, *keys: str) -> None:
    """Mark the running test strict xfail when any of ``ssmbench.compat.KNOWN_DIFFERENCES[keys]`` holds for this
    transformers and model (its reasons joined); a fix upstream then shows up as XPASS, a failure."""
    reason = known_differences(lm, *keys)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
