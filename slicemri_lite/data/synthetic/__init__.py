"""The embedded synthetic cohort: MNI152 templates aged, diseased and scanned.

``synthetic_cohort`` builds a cohort; ``SyntheticConfig`` holds every generator
setting with its source; ``MARKERS`` and ``EFFECTS`` document the planted effects.
"""

from __future__ import annotations

from slicemri_lite.data.synthetic._ageing import (
    EFFECTS,
    MARKERS,
    Markers,
    Participant,
    cumulative_change,
    draw_participant,
    markers,
    typical_participant,
)
from slicemri_lite.data.synthetic._anatomy import (
    Template,
    load_template,
    mm_to_sample_coords,
    release_grids,
    sample,
)
from slicemri_lite.data.synthetic._generator import (
    GENERATOR_VERSION,
    SyntheticConfig,
    reference_brains,
    render_participant,
    synthetic_cohort,
)
from slicemri_lite.data.synthetic._render import (
    WARP_SHAPE,
    Scan,
    draw_scan,
    identity_scan,
    random_warp,
    release_renderers,
    renderer,
)

__all__ = [
    "EFFECTS",
    "GENERATOR_VERSION",
    "MARKERS",
    "Markers",
    "Participant",
    "Scan",
    "SyntheticConfig",
    "Template",
    "WARP_SHAPE",
    "cumulative_change",
    "draw_participant",
    "draw_scan",
    "identity_scan",
    "load_template",
    "markers",
    "mm_to_sample_coords",
    "random_warp",
    "reference_brains",
    "release_grids",
    "release_renderers",
    "render_participant",
    "renderer",
    "sample",
    "synthetic_cohort",
    "typical_participant",
]
