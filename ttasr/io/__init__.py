"""Images in and out: loading any image type, giving results back in it, reading and writing files.

Every input becomes an :class:`ImageRecord`: the RGB float32 ``1x3xHxW`` tensor in [0, 1]
that models consume, the alpha channel kept apart (``1x1xHxW``), and how the image came in,
so that :func:`to_output` hands results back in the same type:

========  =====================================  =========================================
input     accepted                               returned by :func:`to_output`
========  =====================================  =========================================
path      PNG, JPEG, BMP, TIFF, WebP, PNM file   numpy array with the file's dtype (uint8 or
                                                 uint16), ``HxW`` gray, ``HxWxC`` otherwise
PIL       modes L, LA, RGB, RGBA, I;16, I, F     PIL image in the same mode (``1`` → L,
          (others converted to RGB/RGBA)         ``P`` → RGB/RGBA, ``I;16B`` → I;16)
numpy     ``HxW`` or ``HxWxC``, uint8, uint16,   numpy array, same dtype and layout
          float32/64 in [0, 1]
torch     ``HxW``, ``CxHxW``, ``BxCxHxW``, float  tensor, same dtype, dims and device
          in [0, 1] or uint8
========  =====================================  =========================================

Channels: 1 = gray, 2 = gray + alpha, 3 = RGB, 4 = RGBA. Gray images are replicated to three
channels for the model and converted back as the mean of the three output channels (the
inverse of replication; a model that keeps gray inputs gray gives equal channels). Alpha is
not shown to the model: :func:`upscale_alpha` resizes it with bicubic interpolation and
clamps it to [0, 1]. Files and PIL images are turned upright by their EXIF orientation.

Modules, by job: :mod:`.records` (the record and batch types), :mod:`.convert` (caller types
↔ records), :mod:`.codecs` (file bytes ↔ arrays, the pixel limit), :mod:`.png` and
:mod:`.orientation` (header facts read without decoding), :mod:`.loading`
(:func:`load_images`) and :mod:`.saving` (:func:`save_image`).
"""

from .codecs import IMAGE_SUFFIXES, MAX_PIXELS, read_image
from .convert import to_output, upscale_alpha
from .loading import load_images
from .records import ImageBatch, ImageRecord, check_size
from .saving import save_image

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageBatch",
    "ImageRecord",
    "check_size",
    "load_images",
    "read_image",
    "save_image",
    "to_output",
    "upscale_alpha",
]
