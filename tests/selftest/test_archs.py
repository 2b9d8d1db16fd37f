"""Architectures as modules (``ssmbench/archs``): every registered one is complete enough to build, and a piece
one lacks makes the checks that need it skip, saying which -- never crash, never pass without testing."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from pytest_ssmbench.settings import ARCH_PIECES, plan
from ssmbench import archs, tiny
from ssmbench.registry import ARCHS, ModelSpec

pytestmark = [pytest.mark.quick, pytest.mark.selftest]


@pytest.mark.parametrize("key", sorted(ARCHS))
def test_every_architecture_is_complete_and_has_its_tiny_checkpoint(key):
    arch = ARCHS[key]
    assert arch.key == key and arch.family in archs.FAMILIES
    assert (arch.tiny_path / "config.json").is_file(), (
        f"{key}: no tiny checkpoint at {arch.tiny_path}; run ssmbench make-tiny --only {key}")
    assert arch.synthetic_config and arch.tiny_config and arch.published_params > 0
    assert arch.kernels is None or arch.family != "attention", f"{key}: SSM kernels declared for an attention model"


def _plan(spec, needs):
    return plan(spec, test="test_x", families=None, sources=None, heavy=False, benchmark=False,
                device=torch.device("cpu"), model_set="tiny", dtype_choice="auto", needs=needs)


@pytest.mark.parametrize("piece", sorted(ARCH_PIECES))
def test_a_missing_architecture_piece_skips_the_check_saying_which(piece):
    arch = ARCHS["mamba"]
    lacking = dataclasses.replace(arch, **{piece: None if piece != "suite_graph" else False})
    assert _plan(ModelSpec(arch, "tiny", str(arch.tiny_path)), (piece,)).skip is None
    skip = _plan(ModelSpec(lacking, "tiny", str(arch.tiny_path)), (piece,)).skip
    assert skip == f"tiny-mamba: mamba has {ARCH_PIECES[piece]}"


def test_rebuilding_tiny_checkpoints_names_the_valid_architectures():
    with pytest.raises(ValueError, match="unknown architecture.*nope.*valid: " + ", ".join(ARCHS)):
        tiny.make_all(only=["nope"])


def test_a_known_difference_applies_only_to_its_architectures_versions_and_configurations(monkeypatch):
    from types import SimpleNamespace

    from packaging.version import Version

    from ssmbench import compat

    def model(arch, **config):
        return SimpleNamespace(spec=SimpleNamespace(arch=SimpleNamespace(key=arch)), model=SimpleNamespace(
            config=SimpleNamespace(**config)))

    monkeypatch.setattr(compat, "TRANSFORMERS_VERSION", Version("5.17.0"))
    assert "transformers#40861" in compat.known_difference("mamba2-grouped-norm", model("mamba2", n_groups=2))
    assert compat.known_difference("mamba2-grouped-norm", model("mamba2", n_groups=1)) is None  # mamba2-2.7b
    assert compat.known_difference("mamba2-grouped-norm", model("mamba", n_groups=2)) is None
    monkeypatch.setattr(compat, "TRANSFORMERS_VERSION", Version("5.24.0"))
    assert compat.known_difference("mamba2-grouped-norm", model("mamba2", n_groups=2)) is None


def test_the_header_passes_over_an_architecture_this_transformers_lacks(pytestconfig, monkeypatch):
    """Its modeling module does not exist there: the header must not try to import it (it did, on 4.46.3, for
    Bamba: an INTERNALERROR before any test ran)."""
    from pytest_ssmbench import settings as settings_module

    arch = ARCHS["mamba2"]
    missing = dataclasses.replace(arch, key="future", min_transformers="99.0",
                                  kernels=archs.Kernels(module="transformers.models.no_such_model", ops={}))
    run = settings_module.settings(pytestconfig)
    monkeypatch.setattr(run, "specs", [ModelSpec(missing, "tiny", str(arch.tiny_path))])
    lines = settings_module.header(pytestconfig)
    assert not any("future implementation" in line for line in lines), lines


def test_the_option_names_of_architectures_are_the_registry_without_importing_it():
    """The entry point lists architectures by module name (ssmbench.names, no torch): each module's ARCH.key is its
    file's name, and every module is registered."""
    from ssmbench.names import arch_keys

    assert set(arch_keys()) == set(ARCHS)
    for key, arch in ARCHS.items():
        assert importlib.import_module(f"ssmbench.archs.{key}").ARCH is arch
