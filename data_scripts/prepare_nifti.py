"""Turn your own NIfTI files into a cohort cache: ``python data_scripts/prepare_nifti.py PARTICIPANTS_TSV --out DIR``."""

from __future__ import annotations

import argparse
import sys

from slicemri_lite.data import NiftiInputError, prepare_nifti


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "participants_tsv", help="TSV with participant_id, age, path (+ sex, diagnosis)"
    )
    parser.add_argument(
        "--out", required=True, help="cohort cache folder to create (must not exist)"
    )
    parser.add_argument(
        "--resolution", type=int, default=2, choices=(2, 4), help="grid in mm (default 2)"
    )
    parser.add_argument(
        "--skip-bad-rows", action="store_true", help="drop bad rows instead of stopping"
    )
    args = parser.parse_args(argv)

    try:
        cohort = prepare_nifti(
            args.participants_tsv,
            args.out,
            resolution=args.resolution,
            on_error="skip" if args.skip_bad_rows else "raise",
        )
    except (NiftiInputError, FileNotFoundError, FileExistsError) as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{cohort}\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
