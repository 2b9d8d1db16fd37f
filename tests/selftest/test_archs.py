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


def test_a_known_difference_applies_only_to_its_checks_releases_and_configurations():
    from types import SimpleNamespace

    from packaging.version import Version

    norm = next(k for k in ARCHS["mamba2"].known if k.key == "mamba2-grouped-norm")
    assert "transformers#40861" in norm.reason
    assert norm.matches("test_layer_matches_float64_reference", {"layer_kind": "mamba2"})
    assert not norm.matches("test_layer_matches_float64_reference", {"layer_kind": "attention"})
    assert not norm.matches("test_cached_greedy_equals_uncached", {})
    assert norm.holds(Version("5.17.0"), SimpleNamespace(n_groups=2))
    assert not norm.holds(Version("5.17.0"), SimpleNamespace(n_groups=1))  # mamba2-2.7b
    assert not norm.holds(Version("5.24.0"), SimpleNamespace(n_groups=2))
    assert not any(k.key == "mamba2-grouped-norm" for k in ARCHS["mamba"].known)
    one_token = next(k for k in ARCHS["mamba"].known if k.key == "mamba-decode-after-1-token-prompt")
    assert one_token.matches("test_step_decode_logits_match_full_forward", {"prefill": 1})
    assert not one_token.matches("test_step_decode_logits_match_full_forward", {"prefill": 7})
    every = next(k for k in ARCHS["mamba"].known if k.key == "right-padded-prefill-cache")
    assert every.holds(Version("5.26.0rc1"), None) and every.holds(Version("5.26.0.dev0"), None)


def test_every_known_difference_names_a_check_that_exists_and_says_where_it_was_seen():
    """A Known is keyed by the checks it fails: a renamed test would silently drop its xfail (and the check would
    then fail, or a fix upstream would go unseen). Each names a test of tests/conformance and its releases."""
    import ast
    from pathlib import Path

    tests = {node.name for f in (Path(__file__).resolve().parents[1] / "conformance").glob("test_*.py")
             for node in ast.walk(ast.parse(f.read_text())) if isinstance(node, ast.FunctionDef)}
    for arch in ARCHS.values():
        for known in arch.known:
            for check in known.checks:
                assert check.partition("[")[0] in tests, f"{arch.key}: {known.key} names {check}, no such test"
            assert any(word in known.reason for word in ("huggingface/transformers#", "no upstream issue found",
                                                         "repro", "deliberately")), \
                f"{arch.key}: {known.key} names no upstream issue, repro or deliberate choice"


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


def test_a_release_that_cannot_run_an_architecture_skips_its_checks_saying_why():
    arch = dataclasses.replace(ARCHS["mamba2"], unrunnable=(("<99", "every call raises (upstream#1)"),))
    assert "cannot run mamba2: every call raises (upstream#1)" in arch.unsupported()
    assert dataclasses.replace(ARCHS["mamba2"], unrunnable=((">=99", "later"),)).unsupported() is None
    skip = _plan(ModelSpec(arch, "tiny", str(arch.tiny_path)), ()).skip
    assert skip and "upstream#1" in skip


def test_the_option_names_of_architectures_are_the_registry_without_importing_it():
    """The entry point lists architectures by module name (ssmbench.names, no torch): each module's ARCH.key is its
    file's name, and every module is registered."""
    from ssmbench.names import arch_keys

    assert set(arch_keys()) == set(ARCHS)
    for key, arch in ARCHS.items():
        assert importlib.import_module(f"ssmbench.archs.{key}").ARCH is arch


def test_a_hybrid_whose_attention_is_broken_fails_the_numerics_check(monkeypatch):
    """Bamba's attention sits between Mamba-2 mixers: checking layers 0 and -1 alone once let a broken attention
    through (Zamba2's shared block, 1.4 % on the logits). Every kind is checked now: an attention with the wrong
    scale fails its kind's check, while the mixers' still pass."""
    from ssmbench import reference
    from ssmbench.compare import Mismatch, assert_logits_close
    from ssmbench.compat import TRANSFORMERS_VERSION
    from ssmbench.inputs import PROMPTS
    from ssmbench.loading import load
    from ssmbench.registry import resolve_model_set

    if ARCHS["bamba"].unsupported():
        pytest.skip(ARCHS["bamba"].unsupported())
    lm = load(resolve_model_set("tiny", archs=["bamba"])[0], torch.device("cpu"), torch.float32)
    ids = lm.encode(PROMPTS[0])["input_ids"]
    known = [k.key for k in ARCHS["bamba"].known for kind in ("attention", "mamba2")
             if k.matches("test_layer_matches_float64_reference", {"layer_kind": kind})
             and k.holds(TRANSFORMERS_VERSION, lm.model.config)]
    if known:
        pytest.skip(f"this transformers' Bamba differs from the float64 reference already ({', '.join(known)}): "
                    "a break on top of it shows nothing")

    def compare(kind):
        for where, (_, output, expected) in reference.layer_pairs(
                lm.model, ARCHS["bamba"].layers[kind], lambda: lm.model(input_ids=ids, use_cache=False)).items():
            assert_logits_close(f"{kind} {where}", output, expected, lm.dtype)

    compare("attention")
    compare("mamba2")
    for attention, _ in ARCHS["bamba"].layers["attention"].find(lm.model):
        monkeypatch.setattr(attention, "scaling", attention.scaling * 1.25)  # softmax over wrongly scaled scores
    with pytest.raises(Mismatch, match="attention first"):
        compare("attention")
    compare("mamba2")  # the other kind is not affected


def test_a_zamba2_whose_shared_block_is_broken_fails_the_numerics_check(monkeypatch):
    """Zamba2's shared blocks are one module reused at several layers (4.49 ... 5.0) or one module per layer with
    tied weights (5.1 on), each use with adapters of its own: the attention check follows each use. An attention
    with the wrong scale fails the attention check at its first use; an MLP that picks another use's adapter at
    its last use (the kind of slip 5.1 ... 5.16 made, huggingface/transformers#48150) fails the MLP check there;
    each time the other kinds still pass (the mixer's only where it matches its reference: not on 4.x)."""
    from ssmbench import reference
    from ssmbench.compare import Mismatch, assert_logits_close
    from ssmbench.compat import TRANSFORMERS_VERSION
    from ssmbench.inputs import PROMPTS
    from ssmbench.loading import load
    from ssmbench.registry import resolve_model_set

    arch = ARCHS["zamba2"]
    if arch.unsupported():
        pytest.skip(arch.unsupported())
    lm = load(resolve_model_set("tiny", archs=["zamba2"])[0], torch.device("cpu"), torch.float32)
    ids = lm.encode(PROMPTS[0])["input_ids"]
    known = {kind: [k.key for k in arch.known
                    if k.matches("test_layer_matches_float64_reference", {"layer_kind": kind})
                    and k.holds(TRANSFORMERS_VERSION, lm.model.config)] for kind in arch.layers}
    if known["attention"] or known["mlp"]:
        pytest.skip(f"this transformers' Zamba2 differs from the float64 reference already "
                    f"({', '.join(known['attention'] + known['mlp'])}): a break on top of it shows nothing")
    kinds = [kind for kind in ("attention", "mlp", "mamba2") if not known[kind]]  # 4.x: its mixer is wrong already

    def compare(kind):
        for where, (_, output, expected) in reference.layer_pairs(
                lm.model, arch.layers[kind], lambda: lm.model(input_ids=ids, use_cache=False)).items():
            assert_logits_close(f"{kind} {where}", output, expected, lm.dtype)

    for kind in kinds:
        compare(kind)
    with monkeypatch.context() as patch:
        for hook, _ in arch.layers["attention"].find(lm.model):
            attention = getattr(hook, "module", hook)  # the module behind a SharedUse
            patch.setattr(attention, "scaling", attention.scaling * 1.25)  # softmax over wrongly scaled scores
        with pytest.raises(Mismatch, match="attention first"):
            compare("attention")
        for kind in kinds[1:]:
            compare(kind)
    hybrid = [i for i, kind in enumerate(lm.model.config.layers_block_type) if kind == "hybrid"]
    with monkeypatch.context() as patch:
        for hook, _ in arch.layers["mlp"].find(lm.model):
            mlp = getattr(hook, "module", hook)
            # the last use reads the adapter of the use two before it (same block, so a real adapter too)
            patch.setattr(mlp, "layer_dic", {**mlp.layer_dic, hybrid[-1]: len(hybrid) - 3})
        with pytest.raises(Mismatch, match="mlp last"):
            compare("mlp")
        for kind in kinds:
            if kind != "mlp":
                compare(kind)


def test_a_falcon_h1_whose_key_multiplier_is_dropped_fails_the_numerics_check(monkeypatch):
    """Falcon-H1 runs attention and a Mamba-2 mixer side by side in every layer, each under muP multipliers: a
    release that drops the attention's key multiplier (0.7 on the tiny model) must fail the attention's check and
    the whole model's, while the mixer's and the MLP's, each on its own input, still pass."""
    from ssmbench import reference
    from ssmbench.compare import Mismatch, assert_logits_close
    from ssmbench.compat import TRANSFORMERS_VERSION
    from ssmbench.inputs import PROMPTS
    from ssmbench.loading import load
    from ssmbench.registry import resolve_model_set

    arch = ARCHS["falcon_h1"]
    if arch.unsupported():
        pytest.skip(arch.unsupported())
    lm = load(resolve_model_set("tiny", archs=["falcon_h1"])[0], torch.device("cpu"), torch.float32)
    ids = lm.encode(PROMPTS[0])["input_ids"]
    known = [k.key for k in arch.known for kind in arch.layers
             if k.matches("test_layer_matches_float64_reference", {"layer_kind": kind})
             and k.holds(TRANSFORMERS_VERSION, lm.model.config)]
    if known:
        pytest.skip(f"this transformers' Falcon-H1 differs from the float64 reference already ({', '.join(known)})")

    def compare(kind):
        for where, (_, output, expected) in reference.layer_pairs(
                lm.model, arch.layers[kind], lambda: lm.model(input_ids=ids, use_cache=False)).items():
            assert_logits_close(f"{kind} {where}", output, expected, lm.dtype)

    for kind in ("attention", "mamba2", "mlp", "model"):
        compare(kind)
    assert lm.model.config.key_multiplier != 1.0
    for attention, _ in arch.layers["attention"].find(lm.model):
        monkeypatch.setattr(attention, "key_multiplier", 1.0)  # the keys unscaled: softmax over wrong scores
    with pytest.raises(Mismatch, match="attention first"):
        compare("attention")
    with pytest.raises(Mismatch, match="model first"):
        compare("model")
    compare("mamba2")  # the other kinds are not affected
    compare("mlp")
