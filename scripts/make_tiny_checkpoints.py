#!/usr/bin/env python3
"""Rebuild the embedded tiny checkpoints under fixtures/tiny/ (about four minutes on 2 CPU cores).

    python scripts/make_tiny_checkpoints.py [--steps 600] [--seed 0]

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
    args = parser.parse_args()
    losses = make_all(steps=args.steps, seed=args.seed)
    print("final training loss:", {k: round(v, 3) for k, v in losses.items()})
