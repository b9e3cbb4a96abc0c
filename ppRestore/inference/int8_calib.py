"""Calibration inputs for int8: what the exported network really receives.

:func:`collect_calibration_inputs` runs the export through ppRestore's own Predictor on
crops of a folder of images (the model's colour handling, raw synthesis and padding)
and records the network inputs; :mod:`ppRestore.inference.quantize` calibrates on them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np


def _crops(img: np.ndarray, sizes: Sequence[int], rng: np.random.Generator) -> List[np.ndarray]:
    out = []
    h, w = img.shape[:2]
    for s in sizes:
        ch, cw = min(int(s), h), min(int(s), w)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(img[y : y + ch, x : x + cw]))
    return out


_ISOS = (800.0, 1600.0, 3200.0, 6400.0)  # raw calibration ISOs unless --calib_iso


def collect_calibration_inputs(
    export_dir: str,
    calib_dir: str,
    sizes: Sequence[int] = (256, 160),
    max_images: int = 16,
    isos: Sequence[float] = _ISOS,
    seed: int = 0,
    noise: float = 0.0,
) -> List[np.ndarray]:
    """The ``N x C x H x W`` arrays the exported network receives when ppRestore restores
    crops (one per size in ``sizes``) of the first ``max_images`` images of ``calib_dir``.

    Raw models (``infer.color: raw``) get Bayer frames synthesised from the images
    (:func:`~ppRestore.data.raw.unprocess_rgb` + sensor noise at one of ``isos``), or the
    folder's ``.npy``/camera raw frames when it has no images. ``noise`` > 0 adds
    Gaussian noise of that sigma (0-255 scale) to every network input: a denoiser's
    ranges are calibrated on noisy images, as it runs.
    """
    from ..data.io import list_images, read_image
    from .backends import Backend
    from .predictor import Predictor

    pred = Predictor.from_exported(export_dir, backend="onnx", precision="fp32")
    seen: List[np.ndarray] = []

    class _Recorder(Backend):
        name = "calibration"

        def __init__(self, inner: Backend) -> None:
            self.inner = inner

        def run(self, x: np.ndarray) -> np.ndarray:
            if noise > 0:
                x = x + rng.normal(0.0, noise / 255.0, x.shape).astype(np.float32)
            seen.append(np.array(x, dtype=np.float32))
            return self.inner.run(x)

    # no automatic tiling: it would measure memory on random-noise inputs, and their
    # far wider activation ranges would be calibrated as if they were images
    pred.options.tile = "off"
    pred.backend = _Recorder(pred.backend)
    rng = np.random.default_rng(seed)
    raw = pred.options.resolved_color == "raw"
    try:
        files = list_images(calib_dir)
    except Exception as e:  # noqa: BLE001 - a raw-only folder lists no images
        if not raw:
            raise ValueError(f"--calib_dir {calib_dir}: {e}") from None
        files = []
    files = files[: int(max_images)]
    if raw:
        _feed_raw(pred, calib_dir, files, sizes, max_images, isos, rng)
    else:
        for f in files:
            for crop in _crops(read_image(f).to_float(), sizes, rng):
                pred.predict(crop)
    if not seen:
        raise ValueError(f"--calib_dir {calib_dir}: no usable calibration images")
    return seen


def _feed_raw(pred: Any, calib_dir: str, files: list, sizes, max_images: int, isos, rng) -> None:
    """Run a raw model's Predictor on Bayer frames synthesised from ``files`` (or on the
    folder's own raw frames when it has no images)."""
    from ..data.io import read_image
    from ..data.raw import add_raw_noise, read_raw, unprocess_rgb
    from .batch import list_raw_files

    if not files:
        for i, f in enumerate(list_raw_files(calib_dir)[: int(max_images)]):
            r = read_raw(f, "RGGB" if f.lower().endswith(".npy") else None)
            for crop in _crops(r.bayer, [s - s % 2 for s in sizes], rng):
                pred.restore_raw(crop, float(isos[i % len(isos)]), r.pattern)
    for i, f in enumerate(files):
        rgb = read_image(f).to_float()
        for j, crop in enumerate(_crops(rgb, sizes, rng)):
            bayer, _ = unprocess_rgb(crop, rng)
            iso = float(isos[(i + j) % len(isos)])
            pred.restore_raw(add_raw_noise(bayer, iso, rng), iso, "RGGB")


def _default_noise(info: Dict[str, Any], calib_noise: float | None) -> float:
    raw = (info.get("infer") or {}).get("color") == "raw"
    denoise = 25.0 if info.get("task") == "denoise" and not raw else 0.0
    return denoise if calib_noise is None else float(calib_noise)
