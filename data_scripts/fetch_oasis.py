"""Download OASIS-1 with nilearn and save it as a cohort cache: ``python data_scripts/fetch_oasis.py --out DIR``."""

from __future__ import annotations

import argparse

from slicemri_lite.data import oasis_cohort


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--n", type=int, default=None, help="first N participants (default: all 403)"
    )
    parser.add_argument(
        "--resolution", type=int, default=2, choices=(2, 4), help="grid in mm (default 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument(
        "--nilearn-data", default=None, help="nilearn's data folder (default ~/nilearn_data)"
    )
    parser.add_argument(
        "--out", required=True, help="cohort cache folder to create (must not exist)"
    )
    args = parser.parse_args(argv)

    cohort = oasis_cohort(
        args.n, data_dir=args.nilearn_data, resolution=args.resolution, seed=args.seed
    )
    print(f"{cohort}\nwritten to {cohort.save(args.out)}")


if __name__ == "__main__":
    main()
