"""HR-aware adaptation (Zhang and Yao, 2024, "High-Resolution Be Aware!"), METHODS §2.

Building blocks so far (the adapter and the pretraining loop come later):

* :mod:`.modulated`: StyleGAN2's modulated / demodulated convolution.
* :mod:`.networks`: the LR reconstruction network ``E_d``, ``E_i``, ``R``, ``φ``, ``ψ``
  (eq. 4) and its config and file format.
* :mod:`.far`: Gram matrix, Gram descriptors and the Feature-Alignment Regularizer
  (eqs. 10-11).
* :mod:`.encoders`: the frozen established encoders ``E_c`` (CLIP RN50, timm, the SR
  model's own trunk).
* :mod:`.hqi`: the High-Resolution Quality Indicator and the controller (eqs. 7-8).
"""

from __future__ import annotations

from .encoders import (
    EstablishedEncoder,
    OpenCLIPEncoder,
    SRTrunkEncoder,
    TimmEncoder,
    create_established_encoder,
)
from .far import GramDescriptors, feature_alignment_regularizer, gram_descriptors, gram_matrix
from .hqi import (
    EncoderDistance,
    LPIPSDistance,
    ResolvedDistance,
    controller,
    high_resolution_quality_indicator,
    resolve_hqi_distance,
)
from .modulated import ModulatedConv2d, demodulate_weight, modulate_weight, modulated_conv2d
from .networks import (
    AlignmentLayers,
    DegradationEncoder,
    ImageEncoder,
    LRReconstructionNetwork,
    Reconstructor,
    ReconstructorConfig,
    read_network_metadata,
)

__all__ = [
    "AlignmentLayers",
    "DegradationEncoder",
    "EncoderDistance",
    "EstablishedEncoder",
    "GramDescriptors",
    "ImageEncoder",
    "LPIPSDistance",
    "LRReconstructionNetwork",
    "ModulatedConv2d",
    "OpenCLIPEncoder",
    "Reconstructor",
    "ReconstructorConfig",
    "ResolvedDistance",
    "SRTrunkEncoder",
    "TimmEncoder",
    "controller",
    "create_established_encoder",
    "demodulate_weight",
    "feature_alignment_regularizer",
    "gram_descriptors",
    "gram_matrix",
    "high_resolution_quality_indicator",
    "modulate_weight",
    "modulated_conv2d",
    "read_network_metadata",
    "resolve_hqi_distance",
]
