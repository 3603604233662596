"""HR-aware adaptation (Zhang and Yao, 2024, "High-Resolution Be Aware!"), METHODS §2.

* :class:`HRAware` (:mod:`.adapter`): the finetuning adapter (eq. 6), on the shared LR
  reconstruction paradigm of :mod:`.reconstruction` (also :class:`ttasr.LWay`'s).
* :func:`pretrain_reconstructor` (:mod:`.pretrain`): pretraining (eq. 5) with its presets
  ``cpu-small`` and ``paper``; HR images from :mod:`.hr_images`.
* :mod:`.reconstructors`: named reconstructors (``hraware-reconstructor-x4``) built from the
  offline photo set and cached; :mod:`.established`: recording and rebuilding ``E_c``.

Building blocks:

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

from .adapter import HRAWARE_LR, HRAware, HRAwareConfig
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
from .established import encoder_record, parse_encoder_spec, rebuild_encoder
from .hr_images import PHOTO_SET, load_hr_images
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
from .pretrain import PretrainConfig, PretrainResult, pretrain_reconstructor, pretraining_loss
from .reconstruction import ReconstructionAdapter, ReconstructionConfig
from .reconstructors import (
    RECONSTRUCTORS,
    ReconstructorRecipe,
    build_reconstructor,
    default_reconstructor_name,
    reconstructor_path,
    resolve_reconstructor,
)

__all__ = [
    "HRAWARE_LR",
    "HRAware",
    "HRAwareConfig",
    "PHOTO_SET",
    "PretrainConfig",
    "PretrainResult",
    "RECONSTRUCTORS",
    "ReconstructionAdapter",
    "ReconstructionConfig",
    "ReconstructorRecipe",
    "build_reconstructor",
    "default_reconstructor_name",
    "encoder_record",
    "load_hr_images",
    "parse_encoder_spec",
    "pretrain_reconstructor",
    "pretraining_loss",
    "rebuild_encoder",
    "reconstructor_path",
    "resolve_reconstructor",
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
