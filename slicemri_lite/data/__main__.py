"""``python -m slicemri_lite.data {list,clear}``: the cached cohorts and features."""

import sys

from slicemri_lite.data._layout import main

if __name__ == "__main__":
    sys.exit(main())
