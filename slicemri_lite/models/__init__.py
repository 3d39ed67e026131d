"""Networks: 2D encoders, the slice-set model (``SliceSetNet``, ``SliceSetNet.paper``),
the 3D CNN baseline (``Conv3DNet``) and the ImageNet classifier that shows the weights are real.
"""

from __future__ import annotations

from slicemri_lite.models._conv3d import (
    Conv3DNet,
)
from slicemri_lite.models._encoders import (
    ENCODERS,
    Encoder1,
    FoldedInputConv,
    ScratchEncoder,
    build_encoder,
)
from slicemri_lite.models._imagenet import (
    classify_image,
    imagenet_categories,
    imagenet_classifier,
)
from slicemri_lite.models._paper_checkpoint import (
    load_paper_state_dict,
    paper_key_map,
)
from slicemri_lite.models._pooling import (
    AttentionPool,
    PooledAttention,
)
from slicemri_lite.models._slice_set import (
    AGGREGATIONS,
    ATTENTIONS,
    AXES,
    HEADS,
    INPUT_NORMS,
    NORMS,
    POSITIONS,
    PROJECTIONS,
    SliceSetNet,
)
from slicemri_lite.models._weights import (
    OfflineWeightsError,
    efficientnet_lite0_state_dict,
    torchvision_weights_path,
)

__all__ = [
    "AGGREGATIONS",
    "ATTENTIONS",
    "AXES",
    "AttentionPool",
    "Conv3DNet",
    "ENCODERS",
    "Encoder1",
    "FoldedInputConv",
    "HEADS",
    "INPUT_NORMS",
    "NORMS",
    "OfflineWeightsError",
    "POSITIONS",
    "PROJECTIONS",
    "PooledAttention",
    "ScratchEncoder",
    "SliceSetNet",
    "build_encoder",
    "classify_image",
    "efficientnet_lite0_state_dict",
    "imagenet_categories",
    "imagenet_classifier",
    "load_paper_state_dict",
    "paper_key_map",
    "torchvision_weights_path",
]
