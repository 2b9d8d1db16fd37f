"""Rebuild the embedded tiny checkpoints under fixtures/tiny/: each trains in short chunks until its greedy
generations are varied and free of near ties (the conformance tier's criterion) two chunks running, at most --steps
steps (a 2-core machine, one torch thread: 6-28 s an architecture).

    ssmbench make-tiny [--steps 600] [--seed 0] [--only KEY[,KEY...]]

Conformance tests pin no generated text, so rebuilding changes no expectation; commit the new files.
"""

import argparse

from ssmbench.tiny import make_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=lambda v: [k.strip() for k in v.split(",") if k.strip()], default=None,
                        help="rebuild only these architectures (ssmbench/archs), leaving the others' files")
    args = parser.parse_args(argv)
    try:
        losses = make_all(steps=args.steps, seed=args.seed, only=args.only)
    except ValueError as exc:
        parser.error(str(exc))
    print("final training loss:", {k: round(v, 3) for k, v in losses.items()})
    return 0
