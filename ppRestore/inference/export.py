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
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import numpy as np

from ..builder import restored_output
from .graph_fixes import drop_unused_pad_values, fold_scalar_prelu

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

    Over 60 lines only by its signature and Args (the CLI's options); the body is the
    steps below, in order.
    """
    import paddle

    from ..builder import build_model_with_weights
    from ..config import apply_overrides, load_config, validate
    from .predictor import InferOptions, model_attributes

    fmt = _check_export_args(fmt, quantize, calib_dir)
    cfg = (
        load_config(config, opts or [])
        if isinstance(config, str)
        else validate(apply_overrides(config, opts or []))
    )
    paddle.set_device("cpu")
    model = build_model_with_weights(cfg["model"], model_path, purpose="export")
    options = InferOptions.merge(model_attributes(model), dict(cfg.get("infer") or {}))
    shape = _graph_input_shape(input_shape, options)
    os.makedirs(save_dir, exist_ok=True)
    spec = [paddle.static.InputSpec(list(shape), "float32", "x")]
    n_prelu, model_file = _save_inference_graph(cfg, model, spec, save_dir, log)
    info = deploy_info(cfg, options, shape, model_file)
    write_deploy_yaml(save_dir, info)
    probe = None
    if check or measure_memory:
        probe = _check_and_measure(
            save_dir, model, info, shape, options, check, measure_memory, log
        )
    if fmt == "onnx":
        _export_checked_onnx(save_dir, model, spec, n_prelu, info, probe, log)
    if quantize:
        from .quantize import quantize_int8

        info["int8"] = quantize_int8(
            save_dir, calib_dir, calib_sizes, calib_max, int8_keep, log=log
        )
        info["int8_onnx_file"] = info["int8"]["file"]
    return info


# --- the steps of export_model, in order -----------------------------------------------


def _check_export_args(fmt: str, quantize: str | None, calib_dir: str | None) -> str:
    """Refuse a bad ``--format``/``--quantize``/``--calib_dir``; the format to write
    (``onnx`` whenever int8 is asked: the int8 model is quantised from the ONNX graph)."""
    if fmt not in ("paddle", "onnx"):
        raise ValueError(f"--format must be 'paddle' or 'onnx', got '{fmt}'")
    if quantize not in (None, "int8"):
        raise ValueError(f"--quantize must be 'int8', got '{quantize}'")
    if quantize:
        if not calib_dir:
            raise ValueError("--quantize int8 needs --calib_dir (a folder of typical images)")
        if not os.path.exists(calib_dir):
            raise FileNotFoundError(f"--calib_dir {calib_dir}: not found")
        return "onnx"
    return fmt


def _graph_input_shape(input_shape: Sequence[int] | None, options: Any) -> List[int | None]:
    """``[N, C, H, W]`` of the graph input, None where dynamic; C is the model's, H/W
    must be multiples of ``pad_multiple``."""
    c, m = options.in_channels, options.pad_multiple
    shape = list(input_shape) if input_shape else [-1, c, -1, -1]
    if len(shape) != 4:
        raise ValueError(f"--input_shape needs 4 numbers N C H W, got {shape}")
    shape = [None if (s is None or int(s) <= 0) else int(s) for s in shape]
    if shape[1] is not None and shape[1] != c:
        raise ValueError(f"--input_shape has {shape[1]} channels but the model takes {c}")
    shape[1] = c
    for s in shape[2:]:
        if s is not None and s % m:
            raise ValueError(f"--input_shape H/W must be multiples of pad_multiple {m}, got {s}")
    return shape


def _save_inference_graph(
    cfg: Dict[str, Any], model: Any, spec: list, save_dir: str, log: Callable[[str], Any]
) -> Tuple[int, str]:
    """Write ``save_dir/model.*``; returns the number of PReLUs folded and the graph file."""
    from ..builder import build_model

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
    return n_prelu, "model.json" if os.path.isfile(prefix + ".json") else "model.pdmodel"


def deploy_info(
    cfg: Dict[str, Any], options: Any, shape: List[int | None], model_file: str
) -> Dict[str, Any]:
    """The ``deploy.yaml`` content: the model, its graph input and the options the
    predictor needs (``Predictor.from_exported`` reads it back)."""
    import paddle

    from ..builder import MIRROR_KEY, PRETRAINED_KEY

    c = options.in_channels
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
    return info


def _without_diff(info: Dict[str, Any]) -> Dict[str, Any]:
    """What deploy.yaml keeps of ``info`` (the check's Paddle diff is only returned)."""
    return {k: v for k, v in info.items() if k != "max_abs_diff"}


def _check_and_measure(
    save_dir: str,
    model: Any,
    info: Dict[str, Any],
    shape: List[int | None],
    options: Any,
    check: bool,
    measure_memory: bool,
    log: Callable[[str], Any],
) -> Tuple[np.ndarray, np.ndarray] | None:
    """Run the Paddle Inference export against the dynamic graph on an odd-sized input
    (``check``) and measure its memory per pixel (``measure_memory``), recording both in
    ``info`` and deploy.yaml. Returns the check's ``(input, reference output)``."""
    from .predictor import Predictor

    c, m = options.in_channels, options.pad_multiple
    exported = Predictor.from_exported(save_dir, backend="paddle", enable_mkldnn=True)
    probe = None
    if check:
        rng = np.random.default_rng(0)
        h, w = (shape[2] or 3 * m + 1), (shape[3] or 5 * m + 3)
        if shape[2] is None and shape[3] is None:
            h, w = -(-(h) // m) * m, -(-(w) // m) * m  # the graph sees padded sizes
        x = rng.random((1, c, h, w), dtype=np.float32)
        ref = Predictor.from_model(model).backend.run(x)
        diff = float(np.abs(ref - exported.backend.run(x)).max())
        info["max_abs_diff"] = diff
        log(f"check: Paddle Inference vs dynamic graph at {h}x{w}: max |diff| = {diff:.2e}")
        probe = (x, ref)
    if measure_memory:
        from .memory import measure_mem_per_pixel

        mpp = measure_mem_per_pixel(exported.backend.run, c, multiple=m)
        info["mem_per_pixel"] = round(mpp, 1)
        log(f"memory: {mpp:.0f} bytes per input pixel on Paddle Inference (oneDNN)")
    write_deploy_yaml(save_dir, _without_diff(info))
    return probe


def _export_checked_onnx(
    save_dir: str,
    model: Any,
    spec: list,
    n_prelu: int,
    info: Dict[str, Any],
    probe: Tuple[np.ndarray, np.ndarray] | None,
    log: Callable[[str], Any],
) -> None:
    """Write ``model.onnx`` (from the unfolded graph) and record it in deploy.yaml; with
    a check ``probe``, compare it on ONNX Runtime and remove it when it is wrong."""
    from .predictor import Predictor

    if n_prelu:  # convert an unfolded copy of the graph (see _save_inference_graph)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            _jit_save(model, spec, os.path.join(tmp, "model"))
            onnx_file = export_onnx(tmp)
            os.replace(onnx_file, os.path.join(save_dir, "model.onnx"))
            onnx_file = os.path.join(save_dir, "model.onnx")
    else:
        onnx_file = export_onnx(save_dir)
    info["onnx_file"] = os.path.basename(onnx_file)
    write_deploy_yaml(save_dir, _without_diff(info))
    log(f"ONNX model: {onnx_file}")
    if probe is None:
        return
    x, ref = probe
    h, w = x.shape[-2:]
    ort_pred = Predictor.from_exported(save_dir, backend="onnx")
    diff = float(np.abs(ref - ort_pred.backend.run(x)).max())
    info["onnx_max_abs_diff"] = diff
    log(f"check: ONNX Runtime vs dynamic graph at {h}x{w}: max |diff| = {diff:.2e}")
    if not diff <= 1e-3:  # NaN too: never leave a wrong model.onnx behind
        os.remove(onnx_file)
        info.pop("onnx_file")
        write_deploy_yaml(save_dir, _without_diff(info))
        raise RuntimeError(
            f"the ONNX export does not reproduce the model (max |diff| {diff:.3g} "
            f"at {h}x{w}); model.onnx was removed (the Paddle export is kept)"
        )


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
