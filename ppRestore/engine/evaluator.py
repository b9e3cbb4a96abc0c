"""Run a model over a validation dataset and compute PSNR/SSIM per image.

The network runs through :class:`ppRestore.inference.predictor.Predictor` (dynamic
backend), so validation pads/crops (and tiles, if the config's ``infer:`` section asks
for it) exactly as inference does: reflect padding to the model's ``pad_multiple``, the
output cropped to ``scale`` times the input. Images are compared as 8-bit (rounded,
like BasicSR's ``tensor2img``) so numbers match published tables.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

from ..metrics import calculate_psnr, calculate_ssim


def _predictor(
    model: Any, pad_multiple: int | None = None, infer_cfg: dict[str, Any] | None = None
):
    from ..inference.predictor import Predictor

    over: Dict[str, Any] = {"pad_multiple": int(pad_multiple)} if pad_multiple else {}
    if (infer_cfg or {}).get("tile") is None:
        # scores must not depend on the host's free memory: whole images unless the
        # config asks for tiles (inference tiles automatically when an image won't fit)
        over["tile"] = "off"
    return Predictor.from_model(model, infer_cfg=infer_cfg, **over)


def run_model(
    model: Any, x: Any, pad_multiple: int | None = None, infer_cfg: dict[str, Any] | None = None
) -> np.ndarray:
    """``N x C x H x W`` (tensor or array) -> model output as numpy, padded/cropped like inference."""
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return _predictor(model, pad_multiple, infer_cfg).forward(arr.astype(np.float32))


def to_uint8(chw: np.ndarray) -> np.ndarray:
    """``C x H x W`` float [0, 1] -> ``H x W x C`` uint8 (rounded)."""
    return (np.clip(chw.transpose(1, 2, 0), 0, 1) * 255.0).round().astype(np.uint8)


@dataclass
class EvalResult:
    """Mean metrics, per-image rows and a few (input, output, target) triplets."""

    psnr: float
    ssim: float
    input_psnr: float | None
    input_ssim: float | None = None
    rows: List[Dict[str, Any]] = field(default_factory=list)
    samples: List[tuple] = field(default_factory=list)

    def as_dict(self) -> Dict[str, float]:
        d = {"psnr": self.psnr, "ssim": self.ssim}
        if self.input_psnr is not None:
            d["input_psnr"] = self.input_psnr
            d["input_ssim"] = self.input_ssim
        return d


class Evaluator:
    """Evaluate a model on a dataset of ``(lq, gt, index)`` samples.

    Args:
        dataset: validation dataset (deterministic: degradations seeded per index).
        crop_border: pixels cropped on each side before metrics (SR: the scale).
        test_y_channel: compare the BT.601 Y channel.
        pad_multiple: override the model's ``pad_multiple``.
        num_samples: how many triplets to keep for logging.
        progress: a tqdm bar with ETA on stderr (only when stderr is a terminal).
    """

    def __init__(
        self,
        dataset: Any,
        crop_border: int = 0,
        test_y_channel: bool = False,
        pad_multiple: int | None = None,
        num_samples: int = 3,
        infer_cfg: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        self.dataset = dataset
        self.progress = bool(progress)
        self.infer_cfg = dict(infer_cfg or {})
        self.crop_border = int(crop_border)
        self.test_y_channel = bool(test_y_channel)
        self.pad_multiple = pad_multiple
        self.num_samples = num_samples

    def evaluate(self, model: Any, save_dir: str | None = None) -> EvalResult:
        """Run over every sample (batch 1, no grad); optionally write ``per_image.csv``.

        Args:
            model: a ``paddle.nn.Layer``, or a ready
                :class:`~ppRestore.inference.predictor.Predictor` (e.g. an exported model
                on Paddle Inference at bf16), so a deployment is scored exactly like the
                dynamic model it came from.
        """
        from ..inference.predictor import Predictor

        if isinstance(model, Predictor):
            predictor, model, was_training = model, None, False
        else:
            was_training = model.training
            predictor = _predictor(model, self.pad_multiple, self.infer_cfg)  # sets eval mode
        rows, samples = [], []
        indices = range(len(self.dataset))
        if self.progress and len(self.dataset) > 1 and sys.stderr.isatty():
            from tqdm import tqdm

            indices = tqdm(indices, unit="img", desc="val", dynamic_ncols=True, file=sys.stderr)
        try:
            for i in indices:
                lq, gt, idx = self.dataset[i]
                out_np = predictor.forward(lq[None])[0]
                name = (
                    self.dataset.name_of(int(idx)) if hasattr(self.dataset, "name_of") else str(i)
                )
                row = self._score(name, lq, out_np, gt)
                rows.append(row)
                if len(samples) < self.num_samples:
                    samples.append((row["name"], lq, np.clip(out_np, 0, 1), gt))
        finally:
            if was_training:
                model.train()
        res = _summarise(rows, samples)
        if save_dir:
            write_csv(res, save_dir)
        return res

    def _score(self, name: str, lq: np.ndarray, out: np.ndarray, gt: np.ndarray) -> dict:
        """One ``per_image.csv`` row: PSNR/SSIM of the output (and of the degraded input
        as a baseline where it has the ground truth's size, i.e. not for SR)."""
        o8, g8 = to_uint8(out), to_uint8(gt)
        kw = dict(crop_border=self.crop_border, test_y_channel=self.test_y_channel)
        try:
            row = {
                "name": name,
                "psnr": calculate_psnr(o8, g8, **kw),
                "ssim": calculate_ssim(o8, g8, **kw),
            }
            if lq.shape == gt.shape:
                l8 = to_uint8(lq)
                row["input_psnr"] = calculate_psnr(l8, g8, **kw)
                row["input_ssim"] = calculate_ssim(l8, g8, **kw)
        except ValueError as e:  # e.g. an image too small for SSIM: say which one
            raise ValueError(f"{name}: {e}") from None
        return row


def _summarise(rows: list, samples: list) -> EvalResult:
    """Means over the per-image rows (the input baseline only where the rows have it)."""

    def mean(key: str) -> float | None:
        if rows and key in rows[0]:
            return float(np.mean([r[key] for r in rows]))
        return None

    return EvalResult(
        psnr=float(np.mean([r["psnr"] for r in rows])),
        ssim=float(np.mean([r["ssim"] for r in rows])),
        input_psnr=mean("input_psnr"),
        input_ssim=mean("input_ssim"),
        rows=rows,
        samples=samples,
    )


def write_csv(res: EvalResult, save_dir: str) -> str:
    """Write ``per_image.csv`` (one row per image, then a ``mean`` row)."""
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, "per_image.csv")
    keys = list(res.rows[0].keys()) if res.rows else ["name", "psnr", "ssim"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in res.rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        mean = {"name": "mean", **{k: f"{v:.6f}" for k, v in res.as_dict().items()}}
        w.writerow({k: mean.get(k, "") for k in keys})
    return path
