"""Generate exercises/NN_name.ipynb from solutions/NN_name.ipynb.

Usage:
    python scripts/make_exercises.py            # regenerate all exercise notebooks
    python scripts/make_exercises.py --check    # exit 1 and list stale files, write nothing

The conventions (solution markers, cell tags) are documented in saliency_helpers/exercises.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saliency_helpers.exercises import ExerciseError, generate_all

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--exercises", type=Path, default=ROOT / "exercises")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if an exercise is stale"
    )
    args = parser.parse_args(argv)
    try:
        stale = generate_all(args.solutions, args.exercises, check=args.check)
    except (ExerciseError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if stale:
            print("Stale exercise notebooks (run: python scripts/make_exercises.py):")
            for path in stale:
                print(f"  {path}")
            return 1
        print(f"All exercise notebooks in {args.exercises} are up to date.")
        return 0
    for path in stale:
        print(f"wrote {path}")
    print(f"{len(stale)} exercise notebook(s) written, the others were up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
