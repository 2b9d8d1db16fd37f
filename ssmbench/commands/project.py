"""Roofline floors a device implies for the byte counts of a measured run, labelled as projections.

    ssmbench project dgx-spark baselines/h200/points-synthetic-bf16.json \
        --throughput baselines/h200/points-throughput-bf16.json > baselines/dgx-spark/PROJECTION.md
"""

import argparse
from pathlib import Path

from ssmbench.devices import PROFILES, by_key, projection_table
from ssmbench.results import ResultStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("device", choices=[p.key for p in PROFILES])
    parser.add_argument("points", type=Path, help="a results file written by a benchmark run (--ssm-results-file)")
    parser.add_argument("--throughput", type=Path, metavar="POINTS",
                        help="a results file with throughput points (e.g. ssmbench summarize --write's): the memory "
                             "each batch needed there, set against this device's")
    args = parser.parse_args(argv)
    for path in (args.points, args.throughput):
        if path is not None and not path.is_file():
            parser.error(f"no results file at {path}")
    profile = by_key(args.device)

    def read(path: Path, kinds: tuple[str, ...], what: str) -> ResultStore:
        """A results file with measured points of ``kinds``, or a usage error saying what it lacks."""
        try:
            found = ResultStore.read(path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            parser.error(f"{path} is not a results file of a benchmark run ({type(exc).__name__}: {exc})")
        if not any(p.kind in kinds and p.ok for p in found.points):
            parser.error(f"{path} holds no {what} points that ran ({len(found.points)} points of kinds "
                         f"{', '.join(sorted({p.kind for p in found.points})) or 'none'}): {what} points are what "
                         "this projects")
        return found

    store = read(args.points, ("decode",), "decode")
    from ssmbench.registry import ARCHS

    unknown = sorted({p.arch for p in store.points if p.kind == "decode" and p.ok and p.arch not in ARCHS})
    if unknown:
        parser.error(f"{args.points}: architecture(s) {', '.join(map(repr, unknown))} unknown to this suite "
                     f"(known: {', '.join(ARCHS)}); their cache cannot be projected")
    measured = read(args.throughput, ("throughput",), "throughput") if args.throughput is not None else None
    meta = store.meta
    print(f"# {profile.name}: roofline projections (not measurements)\n")
    print(f"Device profile: {profile.bandwidth_gbs:g} GB/s peak bandwidth, "
          f"{'unknown' if profile.bf16_tflops is None else f'{profile.bf16_tflops:g} TFLOP/s'} bf16 peak"
          f"{f' ({profile.note})' if profile.note else ''}; "
          f"{'unified CPU/GPU memory' if profile.integrated else 'discrete memory'}, {profile.memory_gb:g} GB.\n")
    print(f"Byte counts from `{args.points}` (measured on {meta.get('device', '?')}, models {meta.get('models', '?')}, "
          f"transformers' returned cache measured per point). Each floor is the fastest any implementation could "
          "go on this device: decode at batch 1 reads every weight and the cache once per token; prefill does "
          "2 x params x tokens FLOPs. Measured times will be above these; a DGX Spark user records real ones "
          "with the command in the README ('Recording a baseline').\n")
    print("\n".join(projection_table(store.points, profile)))
    # Throughput at the Mamba paper's shape: per model, its measured weights and parameters, and its cache at
    # prompt + new tokens from the architecture's formula (the one the conformance tier checks), in bf16.
    import torch
    from transformers import AutoConfig

    from ssmbench.cache import expected_cache_bytes
    from ssmbench.devices import throughput_projection

    prompt, new = 2048, 128
    models = []
    for p in sorted({p.model: p for p in store.points if p.kind == "decode" and p.ok}.values(), key=lambda p: p.model):
        arch = ARCHS[p.arch]
        config = AutoConfig.for_model(arch.model_type, **arch.synthetic_config)
        models.append((p.model, p.params, p.weight_bytes,
                       lambda b, arch=arch, config=config: expected_cache_bytes(arch, config, prompt + new - 1,
                                                                              torch.bfloat16, batch=b)))
    print(f"\n## Throughput ceilings at the Mamba paper's shape (prompt {prompt}, {new} new tokens)\n")
    print("Roofline ceilings, not measurements: prefill at the bf16 peak, then each decode step reading every weight "
          "and the whole batch's cache (at its final length) at peak bandwidth. 'fits' counts weights and cache "
          "only (activations come on top, so a batch marked yes can still run out of memory; one marked no "
          "cannot run).\n")
    print("\n".join(throughput_projection(models, profile, prompt, new)))
    command = f"ssmbench project {args.device} {args.points}"
    if args.throughput is not None:
        from ssmbench.devices import FIT_HEADROOM, measured_fit_projection

        tm = measured.meta
        print(f"\n## Which batches fit, from the memory measured on {tm.get('device', '?')}\n")
        print(f"From `{args.throughput}` (measured on {tm.get('device', '?')}, torch {tm.get('torch', '?')}, "
              f"transformers {tm.get('transformers', '?')}). A projection, not a measurement: the bytes a batch "
              "needed there (weights, what the backend holds, the call's extra peak, activations included) are the "
              "model's, not the device's, so they decide whether it fits here. 'yes': within "
              f"{(1 - FIT_HEADROOM) * 100:.0f} % of its {profile.memory_gb:g} GB, the rest left for the CUDA context, "
              "the allocator's fragmentation"
              f"{' and, on unified memory, the OS and the CPU side' if profile.integrated else ''}; 'borderline': "
              "between that and all of it -- may run, may not. The ceiling is this "
              "device's roofline for the same weights and cache, as above; the tokens per second beside it were "
              f"measured on {tm.get('device', '?')}, for scale.\n")
        print("\n".join(measured_fit_projection(measured.points, profile)))
        command += f" --throughput {args.throughput}"
    print(f"\nGenerated by `{command}`.")
    return 0
