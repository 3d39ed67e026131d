"""``python -m slicemri_lite.experiments``: see ``slicemri_lite.experiments._cli``."""

import sys

from slicemri_lite.experiments._cli import main

sys.exit(main())
