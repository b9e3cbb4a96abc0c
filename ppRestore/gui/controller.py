"""The GUI's logic without any Tk: load an image, build the predictor, restore in a
worker thread, save, and turn exceptions into one-line messages.

Kept apart from the Tk view (:mod:`.app`) so it is unit-tested without a display and
so another front end (a notebook widget, a web page) could reuse it. Every restore
goes through the one :class:`ppRestore.inference.predictor.Predictor`.

Threading model: :meth:`GuiController.start_restore` runs the (slow) predictor build
and the restore in a daemon thread and reports through a :class:`queue.Queue` of
``(kind, payload)`` events — ``("progress", fraction)``, ``("done", Image)``,
``("error", message)``, ``("cancelled", None)``. Tk is not thread-safe, so the view
polls that queue from its own event loop instead of being called from the worker.
The job object and its progress/cancel hook are in :mod:`.jobs` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Tuple, Union

import numpy as np

from ..data.io import Image, ImageWriteError, read_image, write_image
from .jobs import RestoreCancelled, RestoreJob, _PassProgress

__all__ = ["GuiController", "ModelSpec", "RestoreJob", "RestoreCancelled", "error_message"]

TILE_CHOICES = ("off", "auto", "256", "512", "1024")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run: ``config`` + ``model_path`` (dynamic graph) or ``model_dir``
    (an export folder with ``deploy.yaml``, run with Paddle Inference)."""

    config: str | None = None
    model_path: str | None = None
    model_dir: str | None = None
    device: str = "cpu"
    opts: Tuple[str, ...] = ()

    def check(self) -> None:
        """Raise a ValueError naming what is missing before any slow loading starts."""
        if self.model_dir:
            return
        if not self.config:
            raise ValueError(
                "no model chosen: pick a config (YAML) and weights, or an exported model folder"
            )
        if not self.model_path:
            from ..weights.safe_load import WeightsError

            raise WeightsError("no weights chosen: pick a .pdparams/.safetensors file")

    def describe(self) -> str:
        if self.model_dir:
            return f"exported: {_short(self.model_dir)}"
        if self.config:
            w = _short(self.model_path) if self.model_path else "no weights"
            return f"{_short(self.config)} + {w}"
        return "none chosen (Config… + Weights…, or Exported model…)"


def _short(path: str, keep: int = 2) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return os.sep.join(parts[-keep:]) if len(parts) > keep else path


def error_message(exc: BaseException) -> str:
    """One line for an error dialog: what kind of problem, then the library's message
    (which already names the file and the key). The wording comes from the one error
    table in :mod:`ppRestore.errors`, shared with the command-line tools."""
    from ..errors import gui_message

    return gui_message(exc)


class GuiController:
    """State and actions of the restore window, independent of any toolkit.

    Args:
        spec: the model to use (may be changed later with :meth:`set_model`).
        tile: ``"off"``, ``"auto"`` or a tile size in pixels.
        self_ensemble: average the 8 flips/rotations.
    """

    def __init__(
        self,
        spec: ModelSpec | None = None,
        tile: Union[str, int, None] = "off",
        self_ensemble: bool = False,
    ) -> None:
        self.spec = spec or ModelSpec()
        self.tile: Union[str, int, None] = tile
        self.self_ensemble = self_ensemble
        self.image: Image | None = None
        self.output: Image | None = None
        self.input_path: str | None = None
        self._predictor = None
        self._predictor_spec: ModelSpec | None = None
        self._base_options = None
        self._lock = threading.Lock()
        self.job: RestoreJob | None = None

    # --- state changes ------------------------------------------------------------

    def load_image(self, path: str) -> Image:
        """Read ``path`` (raises ImageReadError); the previous output is dropped."""
        img = read_image(path)
        self.image, self.output, self.input_path = img, None, path
        return img

    def set_model(
        self,
        config: str | None = None,
        model_path: str | None = None,
        model_dir: str | None = None,
        device: str | None = None,
        opts: Tuple[str, ...] = (),
    ) -> ModelSpec:
        """Choose the model; it is (re)built on the next restore only if it changed."""
        self.spec = ModelSpec(
            config or None,
            model_path or None,
            model_dir or None,
            device or self.spec.device,
            tuple(opts),
        )
        return self.spec

    def set_options(self, tile: Union[str, int, None] = None, self_ensemble: bool = False) -> None:
        """Tile (``off``/``auto``/pixels) and self-ensemble for the next restore; they
        apply without rebuilding the model."""
        self.tile = tile
        self.self_ensemble = bool(self_ensemble)

    # --- model ----------------------------------------------------------------------

    def _tile_value(self) -> Union[str, int, None]:
        t = self.tile
        if t is None or str(t).strip().lower() in ("", "off", "none", "0"):
            return None
        if str(t).strip().lower() == "auto":
            return "auto"
        try:
            v = int(str(t).strip())
        except ValueError:
            raise ValueError(
                f"tile must be 'off', 'auto' or a number of pixels, got '{t}'"
            ) from None
        if v < 16:
            raise ValueError(f"tile must be at least 16 pixels, got {v}")
        return v

    def predictor(self):
        """The predictor for the current model spec (built once per spec; slow the
        first time: imports Paddle and loads the weights)."""
        from ..inference.predictor import Predictor

        spec = self.spec
        spec.check()
        if self._predictor is None or self._predictor_spec != spec:
            self._predictor = None
            if spec.model_dir:
                pred = Predictor.from_exported(spec.model_dir, device=spec.device)
            else:
                pred = Predictor.from_config(
                    spec.config, spec.model_path, device=spec.device, opts=list(spec.opts)
                )
            self._predictor, self._predictor_spec = pred, spec
            self._base_options = dataclasses.replace(pred.options)
        return self._predictor

    def _configured_predictor(self):
        pred = self.predictor()
        base = self._base_options
        opts = dataclasses.replace(base, tile=self._tile_value(), self_ensemble=self.self_ensemble)
        opts.validate()
        pred.options = opts
        return pred

    def passes_for(self, image: Image) -> int:
        """How many times the predictor walks the tiles for ``image`` (for progress)."""
        o = self._predictor.options if self._predictor is not None else None
        n = 8 if self.self_ensemble else 1
        if (
            o is not None
            and o.resolved_color == "gray"
            and o.gray_mode == "per_channel"
            and image.data.shape[2] == 3
        ):
            n *= 3
        return n

    def describe_model(self) -> str:
        """What will run; tile and self-ensemble are left out (the toolbar shows them)."""
        if self._predictor is not None and self._predictor_spec == self.spec:
            p, o = self._predictor, self._predictor.options
            return (
                f"{p.meta.get('model_type', '?')} on {p.backend.name} "
                f"(pad_multiple {o.pad_multiple}, scale {o.scale}, color {o.resolved_color}) "
                f"— {self.spec.describe()}"
            )
        return self.spec.describe()

    # --- running --------------------------------------------------------------------

    def restore(
        self,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Image:
        """Restore the loaded image synchronously (the worker thread calls this)."""
        if self.image is None:
            raise ValueError("no image loaded: open an image first")
        with self._lock:
            pred = self._configured_predictor()
            tracker = _PassProgress(
                self.passes_for(self.image),
                progress or (lambda f: None),
                cancel or threading.Event(),
            )
            pred.progress = tracker
            try:
                out = pred.restore_image(self.image)
            finally:
                pred.progress = None
                # keep a measured memory-per-pixel for the next 'auto' tile run
                if pred.options.mem_per_pixel is not None:
                    self._base_options.mem_per_pixel = pred.options.mem_per_pixel
        self.output = out
        return out

    def is_raw(self) -> bool:
        """True when the current model is a raw (Bayer) model (``infer.color: raw``);
        builds the predictor."""
        return self.predictor().options.resolved_color == "raw"

    def restore_raw_file(
        self,
        path: str,
        save_dir: str,
        iso: float,
        pattern: str = "RGGB",
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Tuple[str, str, str]:
        """Denoise one Bayer frame (``.npy``/``.dng``) with the current raw model.

        The one place the front ends call the raw path: the same folder runner as
        ``tools/infer.py`` (:func:`ppRestore.inference.batch.run_raw_batch`), so the
        outputs are identical: ``NAME.npy`` (input dtype and levels), ``NAME.png`` (a
        preview) and ``NAME_compare.png`` (noisy | denoised previews).

        Returns:
            ``(npy, preview_png, compare_png)`` paths in ``save_dir``.
        """
        from ..inference.batch import run_raw_batch

        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        with self._lock:
            pred = self._configured_predictor()
            if pred.options.resolved_color != "raw":
                raise ValueError(
                    "this model restores RGB images, not raw Bayer frames: pick a raw model"
                )
            pred.progress = _PassProgress(
                8 if self.self_ensemble else 1,
                progress or (lambda f: None),
                cancel or threading.Event(),
            )
            try:
                res = run_raw_batch(
                    pred.restore_raw,
                    path,
                    save_dir,
                    iso=iso,
                    pattern=pattern,
                    compare=True,
                    progress=False,
                    log=lambda msg: None,
                )
            finally:
                pred.progress = None
        if res.failed:
            raise ValueError(res.failed[0][1])
        if not res.restored:
            raise ValueError(f"{os.path.basename(path)}: not a raw frame (.npy or camera raw)")
        stem = os.path.splitext(res.restored[0][1])[0]
        return stem + ".npy", stem + ".png", stem + "_compare.png"

    def start_restore(self) -> RestoreJob:
        """Start :meth:`restore` in a daemon thread and return its :class:`RestoreJob`."""
        if self.job is not None and self.job.running():
            raise RuntimeError("a restore is already running")
        job = RestoreJob()

        def work() -> None:
            t0 = time.perf_counter()
            try:
                out = self.restore(lambda f: job.events.put(("progress", f)), job._cancel)
            except RestoreCancelled:
                job.events.put(("cancelled", None))
            except BaseException as e:  # noqa: B036 - every failure must reach the UI
                job.error = error_message(e)
                job.events.put(("error", job.error))
            else:
                job.result = out
                job.seconds = time.perf_counter() - t0
                job.events.put(("done", out))

        job.thread = threading.Thread(target=work, name="ppRestore-restore", daemon=True)
        self.job = job
        job.thread.start()
        return job

    # --- saving and display -----------------------------------------------------------

    def default_save_path(self) -> str:
        """``<input name>_restored.png`` next to the input (PNG keeps 16-bit and alpha)."""
        if not self.input_path:
            return os.path.abspath("restored.png")
        stem = os.path.splitext(os.path.basename(self.input_path))[0]
        return os.path.join(
            os.path.dirname(os.path.abspath(self.input_path)), f"{stem}_restored.png"
        )

    def save(self, path: str) -> str:
        """Write the output (with its alpha) atomically; refuses to overwrite the input."""
        if self.output is None:
            raise ValueError("nothing to save yet: restore an image first")
        if self.input_path and os.path.abspath(path) == os.path.abspath(self.input_path):
            raise ImageWriteError(f"{path}: refusing to overwrite the input image")
        return write_image(path, self.output.data, self.output.alpha)


def display_array(image: Image, max_w: int, max_h: int) -> np.ndarray:
    """An 8-bit RGB ``h x w x 3`` copy of ``image`` scaled to fit ``max_w x max_h``
    (aspect kept; never enlarged beyond 4x so tiny images stay recognisable)."""
    from PIL import Image as PILImage

    data = image.data
    if data.dtype == np.uint16:
        data = (data >> 8).astype(np.uint8)
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    h, w = data.shape[:2]
    s = min(max_w / w, max_h / h, 4.0)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    if (nw, nh) == (w, h):
        return np.ascontiguousarray(data)
    pil = PILImage.fromarray(np.ascontiguousarray(data), "RGB")
    # LANCZOS when shrinking keeps noise visible as noise rather than aliasing;
    # NEAREST when enlarging shows the real pixels.
    resample = PILImage.LANCZOS if s < 1 else PILImage.NEAREST
    return np.asarray(pil.resize((nw, nh), resample))
