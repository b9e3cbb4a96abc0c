"""Tiny models registered for training tests only (the real models live in ppRestore.models)."""

# isort: off
import ppRestore  # noqa: F401  (first: on Paddle 2.x it loads the image codecs before Paddle)
import paddle
import paddle.nn as nn

# isort: on

from ppRestore.registry import LOSSES, MODELS
from tests.helpers import register_once


def _register(cls):
    return register_once(MODELS, cls)


class TinyRestorer(nn.Layer):
    """Residual 2-conv net with dropout (exercises the paddle RNG on resume)."""

    pad_multiple = 4
    scale = 1

    def __init__(self, channels: int = 3, width: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(channels, width, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2D(width, channels, 3, padding=1)

    def forward(self, x, return_aux: bool = False):
        feat = self.drop(paddle.nn.functional.relu(self.conv1(x)))
        out = x + self.conv2(feat)
        if return_aux:
            return {"out": out, "feat": feat}
        return out


TinyRestorer = _register(TinyRestorer)


class NaNAtCall(nn.Layer):
    """A loss that is L1 until its ``at``-th call, then NaN (tests the NaN stop)."""

    needs_aux = False

    def __init__(self, at: int = 5) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, pred, target):
        self.calls += 1
        loss = paddle.mean(paddle.abs(pred - target))
        return loss * float("nan") if self.calls >= self.at else loss


register_once(LOSSES, NaNAtCall)


class AuxFeatL2(nn.Layer):
    """Needs the model's aux dict: mean square of TinyRestorer's hidden features."""

    needs_aux = True

    def forward(self, pred, target, aux):
        return paddle.mean(aux["feat"] ** 2)


register_once(LOSSES, AuxFeatL2)
