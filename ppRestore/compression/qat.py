"""Quantisation-aware training (QAT) that mirrors ppRestore's int8 deploy scheme.

Post-training int8 (:func:`ppRestore.inference.quantize.quantize_int8`: ONNX Runtime
``quantize_static``, QDQ) costs PmrNet about 2 dB on raw data. QAT fine-tunes the float
weights while the forward pass sees the rounding the int8 graph will apply, so the
weights learn to tolerate it (Jacob et al., "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018; gradients through
the rounding by the straight-through estimator, Bengio et al., 2013).

What is simulated is what the deploy graph really quantises (read from a produced
``model_int8.onnx``):

* every ``Conv2D``'s weight: per output channel, symmetric int8 in [-127, 127],
  scale ``max|w_c| / 127`` (ORT's ``WeightSymmetric``); its bias as int32 at scale
  ``s_in * s_w_c``;
* every ``Conv2D``'s input and output: per tensor, asymmetric uint8, range
  ``[min(lo, 0), max(hi, 0)]`` from calibration (ORT's MinMax: the extremes over all
  calibration inputs, measured on the float network), scale ``range / 255``;
* a tensor is quantised once and *every* consumer sees the quantised value (QDQ puts
  one QuantizeLinear/DequantizeLinear pair after its producer): so a residual
  ``x + f(x)`` adds the quantised ``x``. Here a conv's input quantiser is hoisted to the
  outermost layer that receives the same tensor (found by one probe forward), so the
  skip inside that layer sees it too; ``quantize_input`` quantises the network input,
  which a global residual (PmrNet, DnCNN) adds back;
* ``Conv2DTranspose`` is not quantised (the deploy quantises Conv, MatMul and Gemm).

Ranges are calibrated once, on the float network, before training, and then frozen;
the deploy re-calibrates its own. Give ``calib_dir`` (the folder the export will
calibrate on): the ranges then come from exactly the inputs the deploy quantiser sees
(for PmrNet the training crops, at ISO 400-6400, span a 2.5x wider input range than the
deploy's Set5 calibration, so training-batch ranges simulate a much coarser int8 than
the deployed one). Without it, ``calib_batches`` training batches set them. Nothing is added to the model's ``state_dict``: the quantisers live
in forward overrides and hooks, so every checkpoint is the plain float model, loads
strictly into the normal architecture and exports with ``--quantize int8`` unchanged.

Why not ``paddle.quantization.QAT``: it inserts its own quanter layers (renamed state
keys), quantises per tensor unless configured otherwise, does not mirror ORT's shared
tensor quantisation at residual adds, and its export targets Paddle's int8 format, not
the ONNX Runtime QDQ file ppRestore deploys.

Config (``qat:`` section next to ``model:``)::

    qat:
      calib_dir: DIR          # ranges from the inputs --quantize int8 --calib_dir DIR sees
      calib_sizes: [256, 160] # (the export's --calib_sizes / --calib_max defaults)
      calib_max: 16
      calib_batches: 4        # without calib_dir: training batches (float forward)
      quantize_input: true    # the network input is quantised too (global residual)
      exclude: []             # conv layer names kept in float (e.g. if deployed so)
      bias_outside: false     # true where the export writes conv biases as float Adds
"""

from __future__ import annotations

import os
import types
from typing import Any, Dict, Iterable, List, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = [
    "ActQuant",
    "fake_quant_weight",
    "fake_quant_bias",
    "prepare_qat",
    "strip_qat",
    "calibrate",
    "prepare_from_config",
    "QATState",
]

_KNOWN = {
    "calib_batches", "calib_dir", "calib_sizes", "calib_max", "quantize_input", "exclude",
    "bias_outside",
}  # fmt: skip


class ActQuant:
    """Per-tensor asymmetric uint8 fake quantiser with a MinMax range (ORT's rules).

    Not a ``nn.Layer`` on purpose: it must add nothing to the model's ``state_dict``.
    """

    def __init__(self) -> None:
        self.lo, self.hi = np.inf, -np.inf
        self.observing = False

    def observe(self, x: paddle.Tensor) -> None:
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def params(self) -> tuple:
        """(scale, zero_point) as ORT's ``compute_scale_zp`` gives them for uint8."""
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = np.float32((np.float64(hi) - np.float64(lo)) / 255.0)
        if not scale > np.finfo(np.float32).tiny:
            return np.float32(1.0), 0.0
        zp = float(np.clip(np.round(0.0 - lo / float(scale)), 0, 255))
        return scale, zp

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.observing:
            self.observe(x)
            return x
        if not np.isfinite(self.lo):
            return x  # never calibrated: float (calibrate() warns about this)
        scale, zp = self.params()
        s = float(scale)
        lo, hi = (0.0 - zp) * s, (255.0 - zp) * s
        xc = paddle.clip(x, lo, hi)  # straight-through inside the range, zero grad outside
        q = paddle.clip(paddle.round(xc / s) + zp, 0.0, 255.0)
        return xc + ((q - zp) * s - xc).detach()


def _weight_scale(w: paddle.Tensor) -> paddle.Tensor:
    """Per-output-channel int8 scales ``max|w_c| / 127`` (1 for an all-zero channel)."""
    absmax = paddle.abs(w).reshape([w.shape[0], -1]).max(axis=1)
    return paddle.where(absmax > 0, absmax / 127.0, paddle.ones_like(absmax)).detach()


def fake_quant_weight(w: paddle.Tensor) -> paddle.Tensor:
    """Per-output-channel (axis 0) symmetric int8 fake quantisation, ``max|w_c| / 127``,
    with a straight-through gradient."""
    scale = _weight_scale(w).reshape([-1] + [1] * (w.ndim - 1))
    q = paddle.clip(paddle.round(w / scale), -127.0, 127.0) * scale
    return w + (q - w).detach()


def fake_quant_bias(b: paddle.Tensor, w: paddle.Tensor, in_q: ActQuant | None) -> paddle.Tensor:
    """int32 bias at scale ``s_in * s_w_c``, as ORT stores it (straight-through)."""
    if in_q is None or in_q.observing or not np.isfinite(in_q.lo):
        return b
    s = _weight_scale(w) * float(in_q.params()[0])
    return b + (paddle.round(b / s) * s - b).detach()


def _qconv_forward(self: nn.Conv2D, x: paddle.Tensor) -> paddle.Tensor:
    """Conv2D.forward with fake-quantised input (unless hoisted), weight, bias and output."""
    q = self._qat
    if q["in"] is not None:
        x = q["in"](x)
    if self._padding_mode != "zeros":
        x = F.pad(x, self._reversed_padding_repeated_twice, mode=self._padding_mode,
                  data_format=self._data_format)  # fmt: skip
        pad = 0
    else:
        pad = self._padding
    w = fake_quant_weight(self.weight)
    if q["bias_outside"] and self.bias is not None:
        # the export wrote the bias as a separate float Add after the quantised output
        y = F.conv2d(x, w, None, self._stride, pad, self._dilation, self._groups, self._data_format)
        shape = [1, -1, 1, 1] if self._data_format == "NCHW" else [1, 1, 1, -1]
        return q["out"](y) + self.bias.reshape(shape)
    b = None if self.bias is None else fake_quant_bias(self.bias, self.weight, q["in_ref"])
    y = F.conv2d(x, w, b, self._stride, pad, self._dilation, self._groups, self._data_format)
    return q["out"](y)


class QATState:
    """What :func:`prepare_qat` attached (kept on the model as ``model._qat_state``)."""

    def __init__(self) -> None:
        self.convs: Dict[str, nn.Conv2D] = {}
        self.quantizers: List[ActQuant] = []
        self.hooks: List[Any] = []
        self.hoisted: Dict[str, List[str]] = {}  # layer name -> convs whose input it quantises
        self.input_quant: Dict[str, ActQuant] = {}  # conv name -> its input's quantiser
        self.output_quant: Dict[str, ActQuant] = {}  # conv name -> its output's quantiser
        self.model_input: ActQuant | None = None

    def set_observing(self, on: bool) -> None:
        for q in self.quantizers:
            q.observing = on


def _input_owners(model: nn.Layer, convs: Dict[str, nn.Conv2D], probe: paddle.Tensor) -> Dict:
    """For each conv, the outermost sublayer whose first input is the very tensor the
    conv reads (one probe forward; tensors are kept alive so ids are not reused)."""
    calls: List[tuple] = []
    keep: List[Any] = []
    hooks = []
    for depth_name, layer in model.named_sublayers():

        def pre(_l: nn.Layer, inputs: Any, _n: str = depth_name) -> None:
            if inputs and isinstance(inputs[0], paddle.Tensor):
                keep.append(inputs[0])
                calls.append((_n, id(inputs[0])))

        hooks.append(layer.register_forward_pre_hook(pre))
    was = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(probe)
    finally:
        for h in hooks:
            h.remove()
        if was:
            model.train()
    owners: Dict[str, str] = {}
    for name in convs:
        ids = [t for n, t in calls if n == name]
        if not ids:
            continue
        tid = ids[0]
        # outermost = shortest dotted path among the ancestors that got the same tensor
        same = [n for n, t in calls if t == tid and (name == n or name.startswith(n + "."))]
        owners[name] = min(same, key=lambda n: n.count("."))
    return owners


def prepare_qat(
    model: nn.Layer,
    probe_shape: Sequence[int],
    exclude: Iterable[str] = (),
    quantize_input: bool = True,
    bias_outside: bool = False,
) -> QATState:
    """Make ``model`` fake-quantise like the int8 deploy graph (in place; ranges are
    uncalibrated until :func:`calibrate`). ``probe_shape``: an input shape the model
    accepts (one forward finds which layer first receives each conv's input).
    ``bias_outside``: the ONNX export keeps each bias as a float ``Add`` after the
    conv (SRCNN's replicate-padded convs), so the output is quantised before it."""
    if getattr(model, "_qat_state", None) is not None:
        raise ValueError("prepare_qat: the model is already prepared")
    exclude = set(exclude)
    st = QATState()
    for name, layer in model.named_sublayers():
        if type(layer) is nn.Conv2D and name not in exclude:
            st.convs[name] = layer
    missing = exclude - set(dict(model.named_sublayers()))
    if missing:
        raise ValueError(f"qat.exclude: no layer named {', '.join(sorted(missing))}")
    owners = _input_owners(model, st.convs, paddle.zeros(list(probe_shape), "float32"))
    layers = dict(model.named_sublayers())
    shared: Dict[str, ActQuant] = {}
    for name, conv in st.convs.items():
        out_q = ActQuant()
        st.quantizers.append(out_q)
        owner = owners.get(name, name)
        in_q = None
        if owner == name:
            in_q = ActQuant()
            st.quantizers.append(in_q)
        elif owner not in shared:
            shared[owner] = ActQuant()
            st.quantizers.append(shared[owner])
        if owner != name:
            st.hoisted.setdefault(owner, []).append(name)
        st.input_quant[name] = in_q if in_q is not None else shared[owner]
        conv._qat = {"in": in_q, "out": out_q, "in_ref": st.input_quant[name],
                     "bias_outside": bool(bias_outside)}  # fmt: skip
        st.output_quant[name] = out_q
        conv.forward = types.MethodType(_qconv_forward, conv)
    for owner, q in shared.items():
        st.hooks.append(layers[owner].register_forward_pre_hook(_pre_quant(q)))
    if quantize_input:
        st.model_input = ActQuant()
        st.quantizers.append(st.model_input)
        st.hooks.append(model.register_forward_pre_hook(_pre_quant(st.model_input)))
    object.__setattr__(model, "_qat_state", st)
    return st


def _pre_quant(q: ActQuant):
    def hook(_layer: nn.Layer, inputs: Any) -> Any:
        return (q(inputs[0]),) + tuple(inputs[1:])

    return hook


def calibrate(model: nn.Layer, batches: Iterable[paddle.Tensor]) -> int:
    """Set every range from float forwards over ``batches`` (ORT MinMax: the extremes over
    all of them). Returns the number of batches used."""
    st: QATState = model._qat_state
    for q in st.quantizers:
        q.lo, q.hi = np.inf, -np.inf
    was = model.training
    model.eval()
    st.set_observing(True)
    n = 0
    try:
        with paddle.no_grad():
            for x in batches:
                model(x)
                n += 1
    finally:
        st.set_observing(False)
        if was:
            model.train()
    if n == 0:
        raise ValueError("qat: no calibration batches")
    return n


def strip_qat(model: nn.Layer) -> nn.Layer:
    """Remove every fake quantiser: ``model`` is the plain float network again (its
    ``state_dict`` never changed). Returns ``model``."""
    st = getattr(model, "_qat_state", None)
    if st is None:
        return model
    for h in st.hooks:
        h.remove()
    for conv in st.convs.values():
        del conv.forward  # back to the class's Conv2D.forward
        del conv._qat
    object.__delattr__(model, "_qat_state")
    return model


def deploy_calibration_inputs(
    full_cfg: Dict[str, Any], model: nn.Layer, calib_dir: str, sizes: Sequence[int], max_images: int
) -> List[np.ndarray]:
    """The network inputs ``tools/export.py --quantize int8 --calib_dir`` calibrates on,
    for this model: the current weights are exported to a temporary folder and
    :func:`~ppRestore.inference.quantize.collect_calibration_inputs` (the deploy's own
    crops, colour/raw handling and padding) records them."""
    import tempfile

    from ..inference.export import export_model
    from ..inference.exported import load_deploy_yaml
    from ..inference.int8_calib import _default_noise, collect_calibration_inputs
    from ..weights.safe_load import save_weights

    cfg = {k: v for k, v in full_cfg.items() if k != "qat"}
    cfg["model"] = {k: v for k, v in dict(cfg["model"]).items() if k != "pretrained"}
    with tempfile.TemporaryDirectory(prefix="qat_calib_") as tmp:
        w = os.path.join(tmp, "model.pdparams")
        save_weights(model.state_dict(), w)
        exp = os.path.join(tmp, "export")
        # as tools/export.py --no_measure_memory does, then the deploy's own recorder
        # with its default calibration noise (sigma 25 for task: denoise)
        export_model(cfg, w, exp, fmt="onnx", measure_memory=False, log=lambda *a: None)
        noise = _default_noise(load_deploy_yaml(exp), None)
        return collect_calibration_inputs(
            exp, calib_dir, tuple(sizes), int(max_images), noise=noise
        )


def prepare_from_config(
    cfg: Dict[str, Any],
    model: nn.Layer,
    train_dataset: Any,
    batch_size: int = 4,
    full_cfg: Dict[str, Any] | None = None,
) -> QATState:
    """The ``qat:`` config section: prepare ``model`` and calibrate it, on the inputs the
    deploy quantiser will see for ``calib_dir`` (needs ``full_cfg``, the whole config)
    or else on the first ``calib_batches`` batches of ``train_dataset``."""
    from ..engine.logger import get_logger

    cfg = dict(cfg or {}) if cfg is not True else {}
    unknown = set(cfg) - _KNOWN
    if unknown:
        raise ValueError(
            f"qat: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KNOWN))}"
        )
    n_batches = int(cfg.get("calib_batches", 4))
    if n_batches < 1:
        raise ValueError(f"qat.calib_batches must be at least 1, got {n_batches}")
    calib_dir = cfg.get("calib_dir")
    if calib_dir and not os.path.isdir(str(calib_dir)):
        raise FileNotFoundError(f"qat.calib_dir: folder not found: {calib_dir}")
    if calib_dir and full_cfg is None:
        raise ValueError("qat.calib_dir needs the whole config (full_cfg)")
    first = np.asarray(train_dataset[0][0])
    st = prepare_qat(model, (1,) + first.shape, cfg.get("exclude") or (),
                     bool(cfg.get("quantize_input", True)),
                     bool(cfg.get("bias_outside", False)))  # fmt: skip
    if calib_dir:
        # the export rebuilds the plain network from the (unchanged) state_dict
        arrays = deploy_calibration_inputs(
            full_cfg, model, str(calib_dir), cfg.get("calib_sizes", (256, 160)),
            cfg.get("calib_max", 16),
        )  # fmt: skip
        calibrate(model, (paddle.to_tensor(a) for a in arrays))
        where = f"{len(arrays)} deploy calibration inputs from {calib_dir}"
    else:
        n_samples = min(len(train_dataset), n_batches * batch_size)

        def batches():
            for i in range(0, n_samples, batch_size):
                idx = range(i, min(i + batch_size, n_samples))
                items = [np.asarray(train_dataset[j][0]) for j in idx]
                yield paddle.to_tensor(np.stack(items).astype("float32"))

        calibrate(model, batches())
        where = f"{n_samples} training samples"
    get_logger().info(
        f"qat: {len(st.convs)} conv(s) fake-quantised (int8 weights per channel, uint8 "
        f"activations), {len(st.hoisted)} input quantiser(s) hoisted to residual blocks, "
        f"ranges from {where}"
    )
    return st
