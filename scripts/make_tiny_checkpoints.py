#!/usr/bin/env python3
"""Rebuild the embedded tiny checkpoints under fixtures/tiny/ (about four minutes on 2 CPU cores).

    python scripts/make_tiny_checkpoints.py [--steps 600] [--seed 0] [--only KEY[,KEY...]]

Conformance tests pin no generated text, so rebuilding changes no expectation; commit the new files.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ssmbench.tiny import make_all  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=lambda v: [k.strip() for k in v.split(",") if k.strip()], default=None,
                        help="rebuild only these architectures (ssmbench/archs), leaving the others' files")
    args = parser.parse_args()
    try:
        losses = make_all(steps=args.steps, seed=args.seed, only=args.only)
    except ValueError as exc:
        parser.error(str(exc))
    print("final training loss:", {k: round(v, 3) for k, v in losses.items()})
