"""Images in and out: loading any image type, giving results back in it, reading and writing files."""

from .images import (
    IMAGE_SUFFIXES,
    ImageBatch,
    ImageRecord,
    check_size,
    load_images,
    read_image,
    save_image,
    to_output,
    upscale_alpha,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageBatch",
    "ImageRecord",
    "check_size",
    "load_images",
    "read_image",
    "save_image",
    "to_output",
    "upscale_alpha",
]
