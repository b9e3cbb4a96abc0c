"""The web page's logic without Gradio: :class:`WebRestorer` runs a task on an upload.

Tasks, weights (with a download status), one :class:`.controller.GuiController` per
task, previews, the download files and one-line errors; :mod:`.webui` puts the Gradio
page around it and re-exports these names. Tested without a browser
(``tests/test_webui.py``).
"""

from __future__ import annotations

import glob
import ipaddress
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..data.io import Image
from .controller import GuiController, display_array, error_message
from .web_tasks import Task, default_tasks

__all__ = ["WebError", "WebRestorer", "WebResult", "is_loopback", "preview_pair"]

PREVIEW_SIDE = 1024  # longest side of the before/after previews sent to the browser
RAW_SUFFIXES = (".npy", ".dng", ".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2", ".raf")
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

Report = Callable[[Optional[float], str], None]


@dataclass
class WebResult:
    """What one run gives the page."""

    before: np.ndarray  # 8-bit RGB preview of the input (at the output's preview size)
    after: np.ndarray  # 8-bit RGB preview of the result
    files: List[str] = field(default_factory=list)  # downloads: the result first
    message: str = ""


class WebError(Exception):
    """A one-line problem to show on the page."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _partial_download_bytes(since: float) -> int:
    """Bytes written so far by downloads into the weights cache that started after
    ``since`` (``weights.zoo.download`` streams into ``.download-*`` files)."""
    from ..weights.zoo import cache_dir

    total = 0
    for p in glob.glob(os.path.join(cache_dir(), "*", ".download-*")):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if st.st_mtime >= since - 1:
            total += st.st_size
    return total


def _fit(arr: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize an 8-bit RGB array to ``(w, h)`` (nearest when enlarging: real pixels)."""
    from PIL import Image as PILImage

    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    pil = PILImage.fromarray(arr, "RGB")
    up = size[0] > arr.shape[1]
    return np.asarray(pil.resize(size, PILImage.NEAREST if up else PILImage.LANCZOS))


def preview_pair(
    before: Image, after: Image, side: int = PREVIEW_SIDE
) -> Tuple[np.ndarray, np.ndarray]:
    """8-bit previews of input and output at the same size (the output's, fitted to
    ``side``), so a before/after slider lines them up even for super-resolution."""
    b = display_array(after, side, side)
    a = _fit(display_array(before, side, side), (b.shape[1], b.shape[0]))
    return a, b


class WebRestorer:
    """The web page's logic (no Gradio): run a task on an uploaded file.

    Args:
        tasks: the task list (:func:`default_tasks`, maybe with a command-line model first).
        device: ``cpu`` / ``gpu``.
        allow_server_paths: accept local paths and URLs typed as weights (only when the
            page is served on a loopback address).
        max_upload_mb: refuse larger uploads (Gradio enforces it too).
        work_dir: where results are written (one fresh folder per run).
    """

    def __init__(
        self,
        tasks: List[Task] | None = None,
        device: str = "cpu",
        allow_server_paths: bool = True,
        max_upload_mb: float = 200.0,
        work_dir: str | None = None,
    ) -> None:
        self.tasks = list(tasks or default_tasks())
        self.by_label = {t.label: t for t in self.tasks}
        self.device = device
        self.allow_server_paths = allow_server_paths
        self.max_upload_mb = float(max_upload_mb)
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="ppRestore-web-")
        os.makedirs(self.work_dir, exist_ok=True)
        self._controllers: Dict[str, GuiController] = {}
        self._lock = threading.Lock()

    # --- choosing -----------------------------------------------------------------------

    def describe(self, label: str) -> str:
        """One line under the task list: what will run, with which weights."""
        t = self.by_label.get(label)
        if t is None:
            return ""
        if t.model_dir:
            return f"exported model: {t.model_dir}"
        w = t.default_weights()
        w = f"weights `{w}`" if w else "no default weights: upload a .pdparams/.safetensors file"
        return f"config `{t.config}`, {w}"

    def _weights_for(self, task: Task, weights_file: str | None, weights_text: str) -> str | None:
        from ..weights.zoo import ZOO

        text = (weights_text or "").strip()
        if weights_file:
            return weights_file
        if text:
            if text not in ZOO and not self.allow_server_paths:
                raise WebError(
                    f"'{text}' is not a zoo name; this page is served on a network address, "
                    "so only zoo names and uploaded weight files are accepted"
                )
            return text
        w = task.default_weights()
        if w is None and not task.model_dir:
            raise WebError(
                f"{task.label}: no weights known for this task yet; upload a "
                ".pdparams/.safetensors file or type a zoo name"
            )
        return w

    def fetch_weights(self, spec: str, report: Report) -> str:
        """Resolve ``spec`` like ``--model_path`` does (shipped file, zoo name, URL)
        in a thread, reporting the downloaded megabytes while a download runs."""
        from ..weights.zoo import resolve_weights

        out: Dict[str, Any] = {}

        def work() -> None:
            try:
                out["path"] = resolve_weights(spec)
            except BaseException as e:  # noqa: B036 - reported on the page
                out["error"] = e

        t0 = time.time()
        th = threading.Thread(target=work, name="ppRestore-weights", daemon=True)
        th.start()
        th.join(0.3)
        while th.is_alive():
            got = _partial_download_bytes(t0)
            report(None, f"downloading weights '{spec}': {got / 1e6:.1f} MB so far")
            th.join(0.5)
        if "error" in out:
            raise out["error"]
        return out["path"]

    def controller(self, label: str) -> GuiController:
        with self._lock:
            if label not in self._controllers:
                self._controllers[label] = GuiController()
            return self._controllers[label]

    # --- running ------------------------------------------------------------------------

    def _prune(self, keep: int = 16) -> None:
        """Delete all but the newest ``keep`` result folders (a page left running for
        days must not fill the disk; Gradio has its own copy of what it served)."""
        runs = sorted(
            glob.glob(os.path.join(self.work_dir, "run-*")), key=os.path.getmtime, reverse=True
        )
        for old in runs[keep:]:
            shutil.rmtree(old, ignore_errors=True)

    def _check_upload(self, path: str | None) -> str:
        if not path:
            raise WebError("no file: upload an image (or a .npy/.dng raw frame) first")
        if not os.path.isfile(path):
            raise WebError(f"{os.path.basename(path)}: the upload is gone; upload it again")
        mb = os.path.getsize(path) / (1 << 20)
        if mb > self.max_upload_mb:
            raise WebError(
                f"{os.path.basename(path)}: {mb:.1f} MB is above the {self.max_upload_mb:g} MB "
                "upload limit"
            )
        return path

    def run(
        self,
        label: str,
        path: str | None,
        weights_file: str | None = None,
        weights_text: str = "",
        tile: str = "off",
        self_ensemble: bool = False,
        iso: float = 1600.0,
        pattern: str = "RGGB",
        report: Report | None = None,
        name: str | None = None,
    ) -> WebResult:
        """Restore one uploaded file with task ``label``; raises on any problem (see
        :meth:`run_safe`). ``name`` is the original file name (default: ``path``'s)."""
        report = report or (lambda frac, msg: None)
        task = self.by_label.get(label)
        if task is None:
            raise WebError(f"unknown task '{label}'")
        path = self._check_upload(path)
        name = os.path.basename(name or path)
        ctl = self._ready_controller(task, weights_file, weights_text, tile, self_ensemble, report)
        self._prune()
        out_dir = tempfile.mkdtemp(prefix="run-", dir=self.work_dir)
        t0 = time.perf_counter()
        report(0.02, "loading the model")
        raw_model = ctl.is_raw()
        if raw_model or path.lower().endswith(RAW_SUFFIXES):
            if not raw_model:
                raise WebError(
                    f"{name}: a raw frame needs the raw denoising task (this model takes images)"
                )
            return self._run_raw(ctl, path, name, out_dir, iso, pattern, report, t0)
        return self._run_image(ctl, path, name, out_dir, report, t0)

    def _ready_controller(
        self,
        task: Task,
        weights_file: str | None,
        weights_text: str,
        tile: str,
        self_ensemble: bool,
        report: Report,
    ) -> GuiController:
        """The task's controller with its weights resolved (downloaded if need be) and
        the run's options set."""
        weights = self._weights_for(task, weights_file, weights_text)
        if weights is not None:
            report(0.0, f"weights '{os.path.basename(weights)}'")
            weights = self.fetch_weights(weights, report)
        ctl = self.controller(task.label)
        ctl.set_model(
            config=task.config_path(),
            model_path=weights,
            model_dir=task.model_dir,
            device=self.device,
            opts=task.opts,
        )
        ctl.set_options(tile, self_ensemble)
        return ctl

    def _run_raw(
        self,
        ctl: GuiController,
        path: str,
        name: str,
        out_dir: str,
        iso: float,
        pattern: str,
        report: Report,
        t0: float,
    ) -> WebResult:
        """Denoise a Bayer frame: the denoised ``.npy``, its PNG, a noisy|denoised preview."""
        if not (iso and float(iso) > 0):
            raise WebError(f"ISO must be a positive number, got {iso}")
        # copy under the original name so the outputs carry it
        stem = os.path.splitext(name)[0] or "image"
        src = os.path.join(out_dir, "in", stem + os.path.splitext(path)[1].lower())
        os.makedirs(os.path.dirname(src))
        shutil.copyfile(path, src)
        npy, png, compare = ctl.restore_raw_file(
            src, out_dir, float(iso), pattern, progress=lambda f: report(f, "denoising")
        )
        before, after = _split_compare(compare)
        secs = time.perf_counter() - t0
        return WebResult(before, after, [npy, png], f"Done in {secs:.1f} s: {_model_name(ctl)}")

    def _run_image(
        self, ctl: GuiController, path: str, name: str, out_dir: str, report: Report, t0: float
    ) -> WebResult:
        """Restore an image in the controller's worker; ``NAME_restored.png`` and previews."""
        stem = os.path.splitext(name)[0] or "image"
        img = ctl.load_image(path)
        job = ctl.start_restore()
        out = _drain(job, report)
        dst = os.path.join(out_dir, f"{stem}_restored.png")
        ctl.save(dst)
        before, after = preview_pair(img, out)
        secs = time.perf_counter() - t0
        h, w = img.data.shape[:2]
        oh, ow = out.data.shape[:2]
        return WebResult(
            before,
            after,
            [dst],
            f"Done in {secs:.1f} s: {w}x{h} -> {ow}x{oh}, {_model_name(ctl)}",
        )

    def run_safe(self, *args: Any, **kwargs: Any) -> Tuple[WebResult | None, str]:
        """:meth:`run` with every failure turned into the page's one-line message (the
        upload's temporary path shortened to its file name)."""
        try:
            res = self.run(*args, **kwargs)
            return res, res.message
        except WebError as e:
            return None, str(e)
        except BaseException as e:  # noqa: B036 - a page must show every failure
            msg = error_message(e)
            for p in (args[1] if len(args) > 1 else kwargs.get("path"),):
                if p:
                    msg = msg.replace(os.path.dirname(p) + os.sep, "")
            return None, msg


def _model_name(ctl: GuiController) -> str:
    """``UNet on dynamic`` (the full line is in the controller's describe_model)."""
    p = ctl.predictor()
    return f"{p.meta.get('model_type', '?')} on {p.backend.name}"


def _drain(job, report: Report) -> Image:
    """Wait for a controller job, forwarding its progress; the job's one-line error
    becomes a :class:`WebError`."""
    while True:
        try:
            kind, payload = job.events.get(timeout=0.25)
        except queue.Empty:
            if not job.running() and job.events.empty():
                raise WebError("the restore stopped without a result") from None
            continue
        if kind == "progress":
            report(0.05 + 0.95 * float(payload), "restoring")
        elif kind == "done":
            return payload
        elif kind == "error":
            raise WebError(payload)
        elif kind == "cancelled":
            raise WebError("cancelled")


def _split_compare(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """The raw runner's ``NAME_compare.png`` (noisy | 8 px gap | denoised) as two
    previews of the same size."""
    from ..data.io import read_image

    side = read_image(path).data
    w = (side.shape[1] - 8) // 2
    a = Image(np.ascontiguousarray(side[:, :w]))
    b = Image(np.ascontiguousarray(side[:, w + 8 :]))
    return preview_pair(a, b)
