"""Predict with a saved model on NIfTI files: ``python data_scripts/predict_nifti.py MODEL INPUT... [--out CSV]``.

MODEL is a file written by ``slicemri_lite.train.save_model`` (with its training cohort).
INPUT is a participants TSV with a ``path`` column, or one or more NIfTI files. Each image
is prepared as the training cohort was (reoriented, resampled onto its grid, intensities
normalised alike) and predicted, in the task's column (``PREDICTION_COLUMN``):
``predicted_age`` in years, or ``ad_probability``; the conformance report adds
``verdict`` (ok / warn / refuse), ``reasons`` and the checks' scores, and every scan
that is not ``ok`` is named on stderr with its reasons.
"""

from __future__ import annotations

import argparse
import sys

from slicemri_lite.data import PREDICTION_COLUMN, write_csv_atomic
from slicemri_lite.train import load_model, predict_nifti


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a model file written by save_model")
    parser.add_argument("inputs", nargs="+", help="a participants TSV, or NIfTI files")
    parser.add_argument("--out", help="CSV to write (default: print the table)")
    parser.add_argument("--batch-size", type=int, default=4, help="volumes per forward pass")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    args = parser.parse_args(argv)

    single_tsv = len(args.inputs) == 1 and args.inputs[0].endswith(".tsv")
    try:
        model = load_model(args.model)
        table = predict_nifti(
            model,
            args.inputs[0] if single_tsv else args.inputs,
            batch_size=args.batch_size,
            device=args.device,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    column = PREDICTION_COLUMN[model.task]
    if args.out:
        write_csv_atomic(table, args.out, index=False)
        print(f"wrote {len(table)} predictions ({column}) to {args.out}")
    else:
        print(table.to_string(index=False))
    counts = table["verdict"].value_counts()
    print("conformance: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    for _, row in table[table["verdict"].isin(["warn", "refuse"])].iterrows():
        print(f"{row['verdict']}: {row['participant_id']}: {row['reasons']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
