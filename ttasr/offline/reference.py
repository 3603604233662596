"""Run an ncnn model on the CPU with the ``ncnn`` package: the reference a conversion must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError, require

__all__ = ["ncnn_forward"]


def ncnn_forward(
    param_path: str | Path,
    bin_path: str | Path,
    image: torch.Tensor,
    *,
    input_name: str = "data",
    output_name: str = "output",
    num_threads: int = 1,
) -> torch.Tensor:
    """Run ``image`` (1x3xHxW float) through an ncnn model in fp32 on the CPU.

    fp16/bf16 storage and arithmetic are switched off so that the result is the fp32
    computation with the (fp16-rounded) stored weights, comparable with PyTorch.
    """
    ncnn = require("ncnn", "offline", "running ncnn models as a reference")
    if image.ndim != 4 or image.shape[0] != 1:
        raise InputError(f"ncnn_forward takes one image as a 1xCxHxW tensor, got shape {tuple(image.shape)}")
    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.num_threads = num_threads
    for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage",
                 "use_bf16_packed", "use_int8_inference"):
        if hasattr(opt, flag):
            setattr(opt, flag, False)
    if net.load_param(str(param_path)) != 0 or net.load_model(str(bin_path)) != 0:
        raise CheckpointError(f"ncnn could not load '{param_path}' / '{bin_path}'")
    # ncnn.Mat wraps the array without copying: `array` must outlive the extraction.
    array = np.ascontiguousarray(image[0].detach().to("cpu", torch.float32).numpy())
    with net.create_extractor() as ex:
        ex.input(input_name, ncnn.Mat(array))
        ret, out = ex.extract(output_name)
        if ret != 0:
            raise CheckpointError(f"ncnn failed to compute '{output_name}' of '{param_path}' (code {ret})")
        result = np.array(out, dtype=np.float32, copy=True)
    del array
    net.clear()
    return torch.from_numpy(result).unsqueeze(0)
