"""Test helper: export a model with ``paddle.jit`` and run it with Paddle Inference.

Kept in tests/ until ``ppRestore/inference/export.py`` lands; it handles both the
Paddle 3 PIR format (``<prefix>.json``) and the legacy one (``<prefix>.pdmodel``).
"""

from __future__ import annotations

import os

import numpy as np


def export_model(model, prefix: str, in_channels: int) -> str:
    """``paddle.jit.to_static`` with InputSpec ``[None, C, None, None]`` + ``paddle.jit.save``.

    Returns:
        The path of the saved program (``.json`` or ``.pdmodel``).
    """
    import paddle

    model.eval()
    spec = [paddle.static.InputSpec([None, in_channels, None, None], "float32", "x")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    paddle.jit.save(static, prefix)
    for ext in (".json", ".pdmodel"):
        if os.path.isfile(prefix + ext):
            return prefix + ext
    raise FileNotFoundError(f"paddle.jit.save wrote neither {prefix}.json nor {prefix}.pdmodel")


def run_inference(program: str, x: np.ndarray, mkldnn: bool | None = False) -> np.ndarray:
    """Run a saved program on CPU with Paddle Inference (oneDNN off unless asked)."""
    from paddle import inference

    prefix = os.path.splitext(program)[0]
    config = inference.Config(program, prefix + ".pdiparams")
    config.disable_gpu()
    if mkldnn:
        config.enable_mkldnn()
    else:
        config.disable_mkldnn()
    config.set_cpu_math_library_num_threads(1)
    predictor = inference.create_predictor(config)
    name = predictor.get_input_names()[0]
    handle = predictor.get_input_handle(name)
    handle.reshape(x.shape)
    handle.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def export_roundtrip(model, x: np.ndarray, tmp_dir: str, mkldnn: bool | None = False) -> tuple:
    """Return ``(dynamic_output, inference_output)`` for ``x`` (N x C x H x W float32)."""
    import paddle

    model.eval()
    with paddle.no_grad():
        dyn = model(paddle.to_tensor(x)).numpy()
    program = export_model(model, os.path.join(tmp_dir, "model"), x.shape[1])
    return dyn, run_inference(program, x, mkldnn=mkldnn)
