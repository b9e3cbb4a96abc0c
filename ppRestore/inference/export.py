"""Export a trained model for Paddle Inference (and optionally ONNX).

``paddle.jit.to_static`` traces the network with a dynamic ``N x C x H x W`` input
(batch, height and width free), ``paddle.jit.save`` writes ``model.json`` (Paddle >= 3,
PIR) or ``model.pdmodel`` (Paddle 2.x) plus ``model.pdiparams``, and ``deploy.yaml``
records everything the predictor needs: model type, channel order (RGB), value range
([0, 1]), ``pad_multiple``, ``scale``, colour handling, tile defaults and the measured
memory per pixel. Padding happens in the predictor, so the exported graph takes any
size that is a multiple of ``pad_multiple``.

ONNX goes through ``paddle2onnx`` (optional: ``pip install paddle2onnx``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Sequence, Union

import numpy as np

from ..builder import restored_output

__all__ = [
    "export_model",
    "export_onnx",
    "fold_scalar_prelu",
    "drop_unused_pad_values",
    "write_deploy_yaml",
    "DEPLOY_YAML",
]

DEPLOY_YAML = "deploy.yaml"


def _wrap_first_output(model: Any) -> Any:
    """A Layer returning only the restored image (models with aux outputs return a
    dict/tuple, an inference graph needs one tensor)."""
    import paddle

    class _Restored(paddle.nn.Layer):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            return restored_output(self.net(x))

    return _Restored(model)


def fold_scalar_prelu(model: Any) -> int:
    """Replace every single-slope ``nn.PReLU`` in ``model`` by an equal ``nn.LeakyReLU``.

    Why: Paddle Inference's oneDNN ``prelu`` kernel is pathologically slow on CPU (Paddle
    3.3.1, measured here: ~170 ms for a 64x256x256 tensor, more than the 3x3 conv before
    it; it was 38 % of full CMFNet's exported run time), while ``leaky_relu`` is a fast
    oneDNN eltwise op. With one slope ``a`` the two are the same function
    (``x if x >= 0 else a * x``, for any ``a``), so the swap is exact; the slope becomes
    a constant of the inference graph. Per-channel PReLUs are left alone. A shared
    PReLU (CMFNet uses one Layer object in 45 places) maps to one shared LeakyReLU.

    Modifies ``model`` in place (export works on a freshly built copy) and returns the
    number of PReLU objects replaced.
    """
    import paddle

    swapped: Dict[int, Any] = {}
    for layer in [model] + list(model.sublayers()):
        for name, child in list(layer._sub_layers.items()):
            if isinstance(child, paddle.nn.PReLU) and int(np.prod(child._weight.shape)) == 1:
                if id(child) not in swapped:
                    slope = float(child._weight.numpy().reshape(-1)[0])
                    swapped[id(child)] = paddle.nn.LeakyReLU(negative_slope=slope)
                # Paddle keeps sublayers only in _sub_layers (attribute access reads it)
                layer._sub_layers[name] = swapped[id(child)]
    return len(swapped)


def write_deploy_yaml(save_dir: str, info: Dict[str, Any]) -> str:
    import yaml

    path = os.path.join(save_dir, DEPLOY_YAML)
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "# ppRestore exported model: read by deploy/python/infer.py and Predictor.from_exported\n"
        )
        yaml.safe_dump(info, f, sort_keys=False, allow_unicode=True)
    return path


def export_model(
    config: Union[str, Dict[str, Any]],
    model_path: str,
    save_dir: str,
    input_shape: Sequence[int] | None = None,
    fmt: str = "paddle",
    opts: list | None = None,
    measure_memory: bool = True,
    check: bool = True,
    log=print,
    quantize: str | None = None,
    calib_dir: str | None = None,
    calib_sizes: Sequence[int] = (256, 160),
    calib_max: int = 16,
    int8_keep: Sequence[str] = (),
) -> Dict[str, Any]:
    """Export the config's model with weights ``model_path`` into ``save_dir``.

    Args:
        input_shape: ``[N, C, H, W]``; -1 or None entries stay dynamic (default all but C).
        fmt: ``paddle`` (Paddle Inference) or ``onnx`` (both are written: ONNX is
            converted from the Paddle export).
        measure_memory: measure bytes per pixel on Paddle Inference for ``--tile auto``.
        check: run the exported model against the dynamic graph on an odd-sized image.
        quantize: ``int8``: also write ``model_int8.onnx``, post-training quantised on
            the images of ``calib_dir`` (:func:`~ppRestore.inference.quantize.quantize_int8`;
            implies ``fmt="onnx"``); ``calib_sizes``, ``calib_max`` and ``int8_keep``
            (layers kept in float: ``first``, ``last`` or node names) go to it.

    Returns:
        The ``deploy.yaml`` content (plus ``max_abs_diff`` when checked).
    """
    import paddle

    from ..builder import MIRROR_KEY, PRETRAINED_KEY, build_model, build_model_with_weights
    from ..config import apply_overrides, load_config, validate
    from .predictor import InferOptions, Predictor, model_attributes

    if fmt not in ("paddle", "onnx"):
        raise ValueError(f"--format must be 'paddle' or 'onnx', got '{fmt}'")
    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be 'int8', got '{quantize}'")
    if quantize:
        if not calib_dir:
            raise ValueError("--quantize int8 needs --calib_dir (a folder of typical images)")
        if not os.path.exists(calib_dir):
            raise FileNotFoundError(f"--calib_dir {calib_dir}: not found")
        fmt = "onnx"  # the int8 model is quantised from the ONNX graph
    cfg = (
        load_config(config, opts or [])
        if isinstance(config, str)
        else validate(apply_overrides(config, opts or []))
    )
    paddle.set_device("cpu")
    model = build_model_with_weights(cfg["model"], model_path, purpose="export")
    attrs = model_attributes(model)
    infer_cfg = dict(cfg.get("infer") or {})
    options = InferOptions.merge(attrs, infer_cfg)
    c = options.in_channels
    shape = list(input_shape) if input_shape else [-1, c, -1, -1]
    if len(shape) != 4:
        raise ValueError(f"--input_shape needs 4 numbers N C H W, got {shape}")
    shape = [None if (s is None or int(s) <= 0) else int(s) for s in shape]
    if shape[1] is not None and shape[1] != c:
        raise ValueError(f"--input_shape has {shape[1]} channels but the model takes {c}")
    shape[1] = c
    m = options.pad_multiple
    for s in shape[2:]:
        if s is not None and s % m:
            raise ValueError(f"--input_shape H/W must be multiples of pad_multiple {m}, got {s}")
    os.makedirs(save_dir, exist_ok=True)
    spec = [paddle.static.InputSpec(list(shape), "float32", "x")]
    # The Paddle Inference graph gets the PReLU -> LeakyReLU fold (see fold_scalar_prelu);
    # ``model`` stays unfolded: it is the reference for the checks and the source of the
    # ONNX graph (paddle2onnx 2.1 converts leaky_relu with a wrong slope: errors ~1e26).
    pi_model = build_model(cfg["model"])
    pi_model.set_state_dict(model.state_dict())  # same weights, without reading the file again
    pi_model.eval()
    n_prelu = fold_scalar_prelu(pi_model)
    if n_prelu:
        log(f"export: {n_prelu} single-slope PReLU layer(s) written as LeakyReLU (exact)")
    prefix = os.path.join(save_dir, "model")
    _jit_save(pi_model, spec, prefix)
    model_file = "model.json" if os.path.isfile(prefix + ".json") else "model.pdmodel"
    info: Dict[str, Any] = {
        "model_type": cfg["model"]["type"],
        "model": {k: v for k, v in cfg["model"].items() if k not in (PRETRAINED_KEY, MIRROR_KEY)},
        "task": cfg.get("task", ""),
        "model_file": model_file,
        "params_file": "model.pdiparams",
        "input_name": "x",
        "input_shape": [-1 if s is None else s for s in shape],
        "layout": "NCHW",
        "channel_order": "RGB",
        "value_range": [0.0, 1.0],
        "dtype": "float32",
        "pad_multiple": options.pad_multiple,
        "scale": options.scale,
        "in_channels": options.in_channels,
        "out_channels": options.out_channels,
        "upsample_input": bool(options.upsample_input),
        "infer": {
            "color": options.color,
            "gray_mode": options.gray_mode,
            "pad_mode": options.pad_mode,
            "tile": options.tile,
            "tile_overlap": options.tile_overlap,
            "self_ensemble": bool(options.self_ensemble),
        },
        "paddle_version": paddle.__version__,
    }
    # The graph stays dynamic (the predictor pads any size); a config's
    # ``export.input_shape`` is kept as the TensorRT optimisation shape.
    opt = (cfg.get("export") or {}).get("input_shape") or [1, c, 512, 512]
    info["trt_shapes"] = {
        "min": [1, c, 32, 32],
        "opt": [1, c, int(opt[2]), int(opt[3])],
        "max": [1, c, 2048, 2048],
    }
    write_deploy_yaml(save_dir, info)

    if check or measure_memory:
        exported = Predictor.from_exported(save_dir, backend="paddle", enable_mkldnn=True)
        if check:
            rng = np.random.default_rng(0)
            h, w = (shape[2] or 3 * m + 1), (shape[3] or 5 * m + 3)
            if shape[2] is None and shape[3] is None:
                h, w = -(-(h) // m) * m, -(-(w) // m) * m  # the graph sees padded sizes
            x = rng.random((1, c, h, w), dtype=np.float32)
            ref = Predictor.from_model(model).backend.run(x)
            got = exported.backend.run(x)
            diff = float(np.abs(ref - got).max())
            info["max_abs_diff"] = diff
            log(f"check: Paddle Inference vs dynamic graph at {h}x{w}: max |diff| = {diff:.2e}")
        if measure_memory:
            from .memory import measure_mem_per_pixel

            mpp = measure_mem_per_pixel(exported.backend.run, c, multiple=m)
            info["mem_per_pixel"] = round(mpp, 1)
            log(f"memory: {mpp:.0f} bytes per input pixel on Paddle Inference (oneDNN)")
        saved = {k: v for k, v in info.items() if k != "max_abs_diff"}
        write_deploy_yaml(save_dir, saved)
    if fmt == "onnx":
        if n_prelu:  # convert an unfolded copy of the graph (see above)
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                _jit_save(model, spec, os.path.join(tmp, "model"))
                onnx_file = export_onnx(tmp)
                os.replace(onnx_file, os.path.join(save_dir, "model.onnx"))
                onnx_file = os.path.join(save_dir, "model.onnx")
        else:
            onnx_file = export_onnx(save_dir)
        info["onnx_file"] = os.path.basename(onnx_file)
        write_deploy_yaml(save_dir, {k: v for k, v in info.items() if k != "max_abs_diff"})
        log(f"ONNX model: {onnx_file}")
        if check:
            ort_pred = Predictor.from_exported(save_dir, backend="onnx")
            diff = float(np.abs(ref - ort_pred.backend.run(x)).max())
            info["onnx_max_abs_diff"] = diff
            log(f"check: ONNX Runtime vs dynamic graph at {h}x{w}: max |diff| = {diff:.2e}")
            if not diff <= 1e-3:  # NaN too: never leave a wrong model.onnx behind
                os.remove(onnx_file)
                info.pop("onnx_file")
                write_deploy_yaml(save_dir, {k: v for k, v in info.items() if k != "max_abs_diff"})
                raise RuntimeError(
                    f"the ONNX export does not reproduce the model (max |diff| {diff:.3g} "
                    f"at {h}x{w}); model.onnx was removed (the Paddle export is kept)"
                )
    if quantize:
        from .quantize import quantize_int8

        info["int8"] = quantize_int8(
            save_dir, calib_dir, calib_sizes, calib_max, int8_keep, log=log
        )
        info["int8_onnx_file"] = info["int8"]["file"]
    return info


def _jit_save(model: Any, spec: list, prefix: str) -> None:
    import paddle

    # InputSpec edits the list it is given, so each save gets its own copy.
    spec = [paddle.static.InputSpec(list(s.shape), s.dtype, s.name) for s in spec]
    static = paddle.jit.to_static(_wrap_first_output(model), input_spec=spec, full_graph=True)
    paddle.jit.save(static, prefix)


def export_onnx(model_dir: str, opset_version: int = 13) -> str:
    """Convert an exported Paddle model in ``model_dir`` to ``model_dir/model.onnx``."""
    try:
        import paddle2onnx
    except ImportError:
        raise ImportError(
            "ONNX export needs paddle2onnx: pip install paddle2onnx onnxruntime (or ppRestore[onnx])"
        ) from None
    from .backends import find_model_files

    prog, params = find_model_files(model_dir)
    dst = os.path.join(model_dir, "model.onnx")
    paddle2onnx.export(prog, params, dst, opset_version=opset_version, enable_onnx_checker=True)
    if not os.path.isfile(dst):
        raise RuntimeError(f"paddle2onnx did not write {dst}")
    import onnx

    model = onnx.load(dst)
    if drop_unused_pad_values(model):
        onnx.save(model, dst)
    return dst


def drop_unused_pad_values(model: Any) -> int:
    """Remove the ``constant_value`` input of ``edge``/``reflect`` Pad nodes (in place).

    paddle2onnx 2.1 gives such pads an uninitialised constant (values up to ~1e27 were
    seen). ONNX ignores it outside ``constant`` mode, so removing it changes nothing, but
    OpenVINO's int8 pipeline tries to quantise it and fails ("assigned value out of
    range for u8"). Returns the number of Pad nodes changed.
    """
    n = 0
    for node in model.graph.node:
        if node.op_type != "Pad" or len(node.input) < 3:
            continue
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
        if mode != "constant":
            del node.input[2:]
            n += 1
    if n:  # and the constants nothing reads any more
        used = {i for node in model.graph.node for i in node.input}
        keep = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return n
