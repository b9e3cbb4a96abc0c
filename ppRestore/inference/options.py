"""What the Predictor needs to know about a model: :class:`InferOptions`.

Merged from the model class (:func:`model_attributes`), the config's ``infer:`` section
and ``deploy.yaml``; split out of :mod:`ppRestore.inference.predictor`, which
re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Union

__all__ = ["COLOR_MODES", "GRAY_MODES", "MIN_TILE", "InferOptions", "model_attributes"]

COLOR_MODES = ("auto", "rgb", "gray", "y", "none", "raw")
GRAY_MODES = ("per_channel", "y")

# Smallest tile side accepted: below it the overlap dominates (a 1-pixel tile would run
# the network once per pixel); the GUI uses the same floor.
MIN_TILE = 16


@dataclass
class InferOptions:
    """What the predictor needs to know about a model (from the model class, the
    config's ``infer:`` section or ``deploy.yaml``; later sources win).

    Attributes:
        color: ``auto`` (``rgb`` for 3-channel models, ``gray`` for 1-channel), ``rgb``,
            ``gray``, ``y`` (see :mod:`ppRestore.inference.predictor`) or ``none`` (arrays with exactly
            ``in_channels`` channels go through unchanged, e.g. PmrNet's packed raw) or
            ``raw`` (Bayer frames through :meth:`Predictor.restore_raw`, the mode of
            ``configs/pmrnet/pmrnet_raw.yml``).
        gray_mode: how a 1-channel ``gray`` model treats a colour image:
            ``per_channel`` or ``y``.
        upsample_input: bicubic-upscale the input by ``scale`` before the network, which
            then keeps the size (SRCNN classic).
        pad_multiple: the network needs H and W to be multiples of this.
        scale: output size / input size of the whole pipeline.
        in_channels: network input channels.
        out_channels: network output channels.
        pad_mode: numpy pad mode used to reach ``pad_multiple`` (``reflect``).
        tile: tile side in pixels (at least :data:`MIN_TILE`), ``"auto"`` (from the
            memory budget), ``"off"`` (always the whole image) or None (the default:
            whole image when it fits the memory budget, ``auto`` tiles when not).
        tile_overlap: minimum tile overlap in pixels.
        self_ensemble: average the 8 flips/rotations (x8 slower, ~+0.1 dB typically).
        mem_per_pixel: bytes per input pixel (for ``tile: auto``; measured when None).
        max_memory: byte budget of one forward pass for tiling (default: half the free
            memory, at most 4 GiB).
    """

    color: str = "auto"
    gray_mode: str = "per_channel"
    upsample_input: bool = False
    pad_multiple: int = 1
    scale: int = 1
    in_channels: int = 3
    out_channels: int = 3
    pad_mode: str = "reflect"
    tile: Union[int, str] | None = None
    tile_overlap: int = 32
    self_ensemble: bool = False
    mem_per_pixel: float | None = None
    max_memory: float | None = None

    @classmethod
    def merge(cls, *sources: Dict[str, Any] | None) -> InferOptions:
        """Build from dicts; later non-None values override earlier ones; unknown keys
        are ignored here (the config section may hold keys for other tools)."""
        names = {f.name for f in fields(cls)}
        vals: Dict[str, Any] = {}
        for src in sources:
            for k, v in (src or {}).items():
                if k in names and v is not None:
                    vals[k] = v
        opts = cls(**vals)
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.color not in COLOR_MODES:
            raise ValueError(f"infer.color must be one of {COLOR_MODES}, got '{self.color}'")
        if self.gray_mode not in GRAY_MODES:
            raise ValueError(f"infer.gray_mode must be one of {GRAY_MODES}, got '{self.gray_mode}'")
        if isinstance(self.tile, str):
            t = self.tile.strip().lower()
            if t in ("off", "none", "0"):
                self.tile = "off"
            elif t == "auto":
                self.tile = "auto"
            else:
                try:
                    self.tile = int(t)
                except ValueError:
                    raise ValueError(
                        f"tile must be a number of pixels, 'auto' or 'off', got '{self.tile}'"
                    ) from None
        if isinstance(self.tile, bool) or (
            self.tile is not None and not isinstance(self.tile, (int, float, str))
        ):
            raise ValueError(f"tile must be a number of pixels, 'auto' or 'off', got {self.tile!r}")
        if isinstance(self.tile, (int, float)):
            if self.tile == 0:
                self.tile = "off"  # explicit: always the whole image
            elif self.tile < MIN_TILE or self.tile != int(self.tile):
                # a negative tile used to turn tiling off silently
                raise ValueError(
                    f"tile must be at least {MIN_TILE} pixels (or 'auto', or 'off'/0 for the "
                    f"whole image), got {self.tile:g}"
                )
            else:
                self.tile = int(self.tile)
        if self.max_memory is not None and not (
            isinstance(self.max_memory, (int, float)) and self.max_memory > 0
        ):
            raise ValueError(
                f"max_memory must be a positive number of bytes, got {self.max_memory}"
            )
        for k in ("pad_multiple", "scale", "in_channels", "out_channels"):
            setattr(self, k, int(getattr(self, k)))
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {self.tile_overlap}")
        if self.color == "y" and self.in_channels != 1:
            raise ValueError("infer.color 'y' needs a 1-channel model (in_channels: 1)")

    @property
    def resolved_color(self) -> str:
        if self.color != "auto":
            return self.color
        return {1: "gray", 3: "rgb"}.get(self.in_channels, "none")

    @property
    def net_scale(self) -> int:
        """Scale of the network itself (1 when the input is upsampled beforehand)."""
        return 1 if self.upsample_input else self.scale


def model_attributes(model: Any) -> Dict[str, Any]:
    """The predictor-relevant class attributes of a model (design contract)."""
    out = {}
    for k in ("pad_multiple", "scale", "in_channels", "out_channels", "upsample_input"):
        v = getattr(model, k, None)
        if v is not None:
            out[k] = v
    return out
