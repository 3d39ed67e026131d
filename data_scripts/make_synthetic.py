"""Build a synthetic cohort cache.

Two ways to call it:

- ``python data_scripts/make_synthetic.py --n 400 --resolution 2 --seed 0 --out DIR`` writes a
  cohort cache folder ``DIR`` (which must not exist yet);
- ``python data_scripts/make_synthetic.py --profile cpu`` builds the cohorts that the
  book's chapters open at that profile, and the frozen slice features their experiment
  grids read (and Chapter 9's rescans and multi-site cohort), into the shared data directory (``$SLICEMRI_DATA``, else
  ``~/slicemri_data``); what is already there is reused. ``make book`` runs this.
"""

from __future__ import annotations

import argparse
import time

from slicemri_lite.data import open_cohort, synthetic_cohort
from slicemri_lite.experiments import (
    PROFILES,
    book_data_grids,
    get_profile,
    prepare_grid_data,
    prepare_trust_data,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile",
        choices=("auto", *PROFILES),
        help="build the chapters' cohort for this profile into the shared data directory",
    )
    parser.add_argument("--n", type=int, help="number of participants")
    parser.add_argument(
        "--resolution", type=int, default=2, choices=(2, 4), help="grid in mm (default 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator and split seed (default 0)")
    parser.add_argument(
        "--scans-per-subject", type=int, default=1, help="repeat scans per participant"
    )
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--out", help="cohort cache folder to create (must not exist)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.profile:
        profile = get_profile(args.profile)
        cohort = open_cohort(
            "synthetic",
            n_subjects=profile.n_subjects,
            resolution=profile.resolution,
            seed=args.seed,
        )
        print(f"profile {profile.name}: {cohort} ready ({time.perf_counter() - start:.1f} s)")
        for name in book_data_grids():
            for line in prepare_grid_data(name, profile.name, seed=args.seed):
                print(f"{line} ({time.perf_counter() - start:.1f} s)", flush=True)
        for line in prepare_trust_data(profile.name, seed=args.seed):  # Chapter 9
            print(f"{line} ({time.perf_counter() - start:.1f} s)", flush=True)
        return
    if args.n is None or args.out is None:
        parser.error("give --profile, or both --n and --out")
    cohort = synthetic_cohort(
        args.n,
        seed=args.seed,
        resolution=args.resolution,
        scans_per_subject=args.scans_per_subject,
        dtype=args.dtype,
        progress=True,
    )
    seconds = time.perf_counter() - start
    path = cohort.save(args.out)
    print(f"{cohort}\nbuilt in {seconds:.1f} s (template set-up included), written to {path}")


if __name__ == "__main__":
    main()
