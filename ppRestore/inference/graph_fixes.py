"""Exact rewrites of an inference graph that work around engine and converter bugs.

Split out of :mod:`ppRestore.inference.export` (which re-exports both functions).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

__all__ = ["fold_scalar_prelu", "drop_unused_pad_values"]


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
