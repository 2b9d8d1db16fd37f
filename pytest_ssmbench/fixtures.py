"""Fixtures: the model under test (one resident at a time, freed before the next loads) and the sweep's
settings."""

from __future__ import annotations

import pytest

from ssmbench.compat import TRANSFORMERS_VERSION
from ssmbench.loading import LoadedModel, load
from ssmbench.registry import ModelSpec

from .settings import plan_for, settings
from .sweep import BenchSettings, bench_settings


class ModelPool:
    def __init__(self, config: pytest.Config | None = None) -> None:
        self.current: LoadedModel | None = None
        self.config = config

    def get(self, spec: ModelSpec, device, dtype) -> LoadedModel:
        if self.current is not None and (self.current.spec, self.current.dtype) == (spec, dtype):
            return self.current
        self.release()
        self.current = load(spec, device, dtype)
        if self.config is not None:
            self.config.hook.pytest_ssmbench_model_loaded(config=self.config, lm=self.current)
        return self.current

    def release(self) -> None:
        if self.current is not None:
            self.current.free()
            self.current = None


@pytest.fixture(scope="session")
def model_pool(request: pytest.FixtureRequest):
    pool = ModelPool(request.config)
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
    lm = model_pool.get(spec, settings(request.config).device, dtype)
    reason = known_differences(request, lm)
    if reason:  # strict: a fix upstream shows up as XPASS, a failure to read
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    return lm


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> BenchSettings:
    return bench_settings(request.config)


def known_differences(request: pytest.FixtureRequest, lm: LoadedModel) -> str | None:
    """The reasons of the architecture's known differences (``Arch.known``) that hold for the running check on this
    transformers and this model's configuration, joined; None where none does."""
    node = request.node
    params = {k: v for k, v in getattr(getattr(node, "callspec", None), "params", {}).items() if k != "spec"}
    reasons = [k.reason for k in lm.spec.arch.known
               if k.matches(node.originalname, params) and k.holds(TRANSFORMERS_VERSION, lm.model.config)]
    return "; ".join(reasons) or None
