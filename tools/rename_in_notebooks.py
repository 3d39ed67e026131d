"""Apply the library's renames to the chapters' code cells (idempotent)."""

import json
import re
import sys

RENAMES = [
    (r"from slicemri_lite import geometry, grid, viz", "from slicemri_lite import geometry, viz"),
    (r"from slicemri_lite import grid\n", "from slicemri_lite import geometry\n"),
    (r"\bgrid\.grid_", "geometry.grid_"),
    (
        r"from slicemri_lite\.baseline import linear_baseline",
        "from slicemri_lite.baselines import linear_baseline",
    ),
]

for path in sys.argv[1:]:
    nb = json.load(open(path))
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        new = src
        for a, b in RENAMES:
            new = re.sub(a, b, new)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
    with open(path, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
