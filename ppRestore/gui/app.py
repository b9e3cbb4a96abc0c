"""The Tk view of the restore window; all logic lives in :class:`.controller.GuiController`.

The window: a toolbar (open image, choose config + weights or an exported model, tile
size, self-ensemble, Restore / Cancel, Save output), the input and the output side by
side scaled to fit, and a progress bar with a one-line status. A restore runs in the
controller's worker thread; this view polls its event queue with ``after()`` so the
window keeps redrawing and answering while Paddle works.

``--selftest IMAGE`` drives the same widgets without a person (open, restore, save,
optional screenshot, quit) for checking the real window under Xvfb (:mod:`.selftest`).
"""

from __future__ import annotations

import os
import queue
import sys
import tkinter as tk
from tkinter import filedialog, messagebox, ttk
from typing import Any, Callable, List

from .controller import TILE_CHOICES, GuiController, ModelSpec, display_array, error_message

IMAGE_TYPES = [
    ("Images", "*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.ppm *.pgm"),
    ("All files", "*"),
]
POLL_MS = 50


class RestoreApp:
    """Build the widgets on ``root`` around ``controller``.

    Args:
        root: the Tk root (or a Toplevel).
        controller: the logic; its model spec and options fill the widgets.
        show_error: how to show a one-line error (a modal dialog by default; the
            self-test replaces it so an error ends the run instead of waiting for a click).
    """

    def __init__(
        self,
        root: tk.Misc,
        controller: GuiController,
        show_error: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.ctl = controller
        self.show_error = show_error or (lambda msg: messagebox.showerror("ppRestore", msg))
        self._photos: List[Any] = []  # keep PhotoImages alive (Tk does not hold a reference)
        self._resize_pending: str | None = None
        self.on_finished: Callable[[str], None] | None = None  # for the self-test
        self.polls = 0
        root.title("ppRestore")
        style = ttk.Style(root)
        if "clam" in style.theme_names() and sys.platform.startswith("linux"):
            # Tk's Linux default theme looks like 1995; clam is built in everywhere.
            style.theme_use("clam")
            # clam's progress bar is light grey on grey: a full bar looked empty.
            style.configure("Horizontal.TProgressbar", background="#3d7bd9", troughcolor="#d9d9d9")
        root.minsize(640, 400)
        self._build()
        self._refresh_model_label()
        self._refresh_buttons()

    # --- layout -----------------------------------------------------------------------

    def _build(self) -> None:
        # Packing order is layout order: three top bars, the status row at the bottom,
        # then the image views take the rest.
        pad = {"padx": 4, "pady": 3}
        self._build_model_bar(pad)
        self._build_run_bar(pad)
        bar3 = ttk.Frame(self.root)
        bar3.pack(side=tk.TOP, fill=tk.X)
        # Its own row: a model description is long and would be cut off in a toolbar.
        ttk.Label(bar3, textvariable=self.model_var, foreground="#333").pack(
            side=tk.LEFT, fill=tk.X, padx=6, pady=(0, 4)
        )
        bottom = ttk.Frame(self.root)
        bottom.pack(side=tk.BOTTOM, fill=tk.X)
        self.progress = ttk.Progressbar(bottom, length=220, mode="determinate", maximum=100)
        self.progress.pack(side=tk.LEFT, **pad)
        self.status_var = tk.StringVar(value="Open an image to start.")
        ttk.Label(bottom, textvariable=self.status_var).pack(side=tk.LEFT, fill=tk.X, **pad)
        self._build_views()

    def _build_model_bar(self, pad: dict) -> None:
        """Open image; choose a config, weights or an exported model."""
        bar1 = ttk.Frame(self.root)
        bar1.pack(side=tk.TOP, fill=tk.X)
        self.btn_open = ttk.Button(bar1, text="Open image…", command=self.ask_open)
        self.btn_open.pack(side=tk.LEFT, **pad)
        ttk.Separator(bar1, orient=tk.VERTICAL).pack(side=tk.LEFT, fill=tk.Y, padx=6)
        ttk.Label(bar1, text="Model:").pack(side=tk.LEFT)
        ttk.Button(bar1, text="Config…", command=self.ask_config).pack(side=tk.LEFT, **pad)
        ttk.Button(bar1, text="Weights…", command=self.ask_weights).pack(side=tk.LEFT, **pad)
        ttk.Button(bar1, text="Exported model…", command=self.ask_model_dir).pack(
            side=tk.LEFT, **pad
        )
        self.model_var = tk.StringVar()

    def _build_run_bar(self, pad: dict) -> None:
        """Tile, self-ensemble, Restore / Cancel, Save output."""
        bar2 = ttk.Frame(self.root)
        bar2.pack(side=tk.TOP, fill=tk.X)
        ttk.Label(bar2, text="Tile:").pack(side=tk.LEFT, padx=(4, 0))
        self.tile_var = tk.StringVar(value=str(self.ctl.tile or "off"))
        self.tile_box = ttk.Combobox(bar2, textvariable=self.tile_var, values=TILE_CHOICES, width=6)
        self.tile_box.pack(side=tk.LEFT, **pad)
        self.ens_var = tk.BooleanVar(value=self.ctl.self_ensemble)
        ttk.Checkbutton(bar2, text="Self-ensemble (x8 slower)", variable=self.ens_var).pack(
            side=tk.LEFT, **pad
        )
        self.btn_restore = ttk.Button(bar2, text="Restore", command=self.start_restore)
        self.btn_restore.pack(side=tk.LEFT, **pad)
        self.btn_cancel = ttk.Button(bar2, text="Cancel", command=self.cancel)
        self.btn_cancel.pack(side=tk.LEFT, **pad)
        self.btn_save = ttk.Button(bar2, text="Save output…", command=self.ask_save)
        self.btn_save.pack(side=tk.LEFT, **pad)

    def _build_views(self) -> None:
        """Input and output side by side, each scaled to its half of the window."""
        self.views = ttk.Frame(self.root)
        self.views.pack(side=tk.TOP, fill=tk.BOTH, expand=True)
        self.views.columnconfigure(0, weight=1, uniform="v")
        self.views.columnconfigure(1, weight=1, uniform="v")
        self.views.rowconfigure(1, weight=1)
        self.in_title = tk.StringVar(value="Input")
        self.out_title = tk.StringVar(value="Output")
        ttk.Label(self.views, textvariable=self.in_title).grid(row=0, column=0)
        ttk.Label(self.views, textvariable=self.out_title).grid(row=0, column=1)
        # Fixed-size-independent panels: the image is scaled to the panel, not the
        # panel to the image, so a huge photo never pushes the window off screen.
        self.in_panel = tk.Label(self.views, background="#2b2b2b", width=1, height=1)
        self.out_panel = tk.Label(self.views, background="#2b2b2b", width=1, height=1)
        self.in_panel.grid(row=1, column=0, sticky="nsew", padx=(6, 3), pady=(0, 6))
        self.out_panel.grid(row=1, column=1, sticky="nsew", padx=(3, 6), pady=(0, 6))
        self.views.bind("<Configure>", self._on_resize)

    # --- helpers ------------------------------------------------------------------------

    def _refresh_model_label(self) -> None:
        self.model_var.set(f"Model: {self.ctl.describe_model()}")

    def _refresh_buttons(self) -> None:
        busy = self.ctl.job is not None and self.ctl.job.running()
        self.btn_restore.state(["disabled"] if busy or self.ctl.image is None else ["!disabled"])
        self.btn_cancel.state(["!disabled"] if busy else ["disabled"])
        self.btn_save.state(["disabled"] if busy or self.ctl.output is None else ["!disabled"])
        self.btn_open.state(["disabled"] if busy else ["!disabled"])

    def _error(self, msg: str) -> None:
        self.status_var.set(msg)
        self.show_error(msg)

    def _on_resize(self, _event: Any = None) -> None:
        # Debounce: re-scaling on every pixel of a window drag would stall the UI.
        if self._resize_pending is not None:
            self.root.after_cancel(self._resize_pending)
        self._resize_pending = self.root.after(120, self.redraw)

    def redraw(self) -> None:
        """Scale the input and output into their panels."""
        from PIL import Image as PILImage
        from PIL import ImageTk

        self._resize_pending = None
        self._photos = []
        for img, panel in ((self.ctl.image, self.in_panel), (self.ctl.output, self.out_panel)):
            if img is None:
                panel.configure(image="")
                continue
            w = max(16, panel.winfo_width() - 4)
            h = max(16, panel.winfo_height() - 4)
            photo = ImageTk.PhotoImage(PILImage.fromarray(display_array(img, w, h)))
            panel.configure(image=photo)
            self._photos.append(photo)

    @staticmethod
    def _size(img: Any) -> str:
        h, w, c = img.data.shape
        depth = "16-bit" if img.data.dtype.itemsize == 2 else "8-bit"
        kind = "grey" if c == 1 else "RGB"
        return f"{w}×{h} {kind} {depth}" + (" +alpha" if img.alpha is not None else "")

    # --- actions ----------------------------------------------------------------------

    def ask_open(self) -> None:
        start = os.path.dirname(self.ctl.input_path) if self.ctl.input_path else os.getcwd()
        path = filedialog.askopenfilename(
            title="Open image", filetypes=IMAGE_TYPES, initialdir=start
        )
        if path:
            self.open_image(path)

    def open_image(self, path: str) -> bool:
        try:
            img = self.ctl.load_image(path)
        except Exception as e:  # any failure becomes one line in a dialog
            self._error(error_message(e))
            return False
        self.in_title.set(f"Input: {os.path.basename(path)} ({self._size(img)})")
        self.out_title.set("Output")
        self.progress.configure(mode="determinate", value=0)
        ready = "Ready: press Restore."
        if img.frames > 1:  # animated GIF/WebP, multi-page TIFF: say what gets restored
            ready = f"{img.frames} frames: only the first is restored. {ready}"
        self.status_var.set(ready)
        self.redraw()
        self._refresh_buttons()
        return True

    def ask_config(self) -> None:
        path = filedialog.askopenfilename(
            title="Model config", filetypes=[("YAML", "*.yml *.yaml"), ("All files", "*")]
        )
        if path:
            s = self.ctl.spec
            self.ctl.set_model(config=path, model_path=s.model_path, device=s.device)
            self._refresh_model_label()

    def ask_weights(self) -> None:
        s = self.ctl.spec
        path = filedialog.askopenfilename(
            title="Weights",
            # weights usually sit in a run folder, not next to the config: start from cwd
            initialdir=os.path.dirname(s.model_path) if s.model_path else os.getcwd(),
            filetypes=[("Weights", "*.pdparams *.safetensors"), ("All files", "*")],
        )
        if path:
            s = self.ctl.spec
            self.ctl.set_model(config=s.config, model_path=path, device=s.device, opts=s.opts)
            self._refresh_model_label()

    def ask_model_dir(self) -> None:
        path = filedialog.askdirectory(title="Exported model folder (with deploy.yaml)")
        if path:
            self.ctl.set_model(model_dir=path, device=self.ctl.spec.device)
            self._refresh_model_label()

    def start_restore(self) -> None:
        try:
            self.ctl.set_options(tile=self.tile_var.get(), self_ensemble=self.ens_var.get())
            self.ctl._tile_value()  # validate the tile field before starting the thread
            self.ctl.spec.check()
            self.job = self.ctl.start_restore()
        except Exception as e:
            self._error(error_message(e))
            return
        # Indeterminate until the first tile reports: a whole-image pass has no steps.
        self.progress.configure(mode="indeterminate", value=0)
        self.progress.start(15)
        self.status_var.set("Loading the model and restoring…")
        self._refresh_buttons()
        self.root.after(POLL_MS, self._poll)

    def cancel(self) -> None:
        if self.ctl.job is not None:
            self.ctl.job.cancel()
            self.status_var.set("Cancelling after the current tile…")

    def _poll(self) -> None:
        self.polls += 1  # the self-test checks the event loop kept turning during a run
        job = self.ctl.job
        finished = None
        try:
            while True:
                kind, payload = job.events.get_nowait()
                if kind == "progress":
                    if str(self.progress.cget("mode")) != "determinate":
                        self.progress.stop()
                        self.progress.configure(mode="determinate")
                    self.progress.configure(value=100 * payload)
                    self.status_var.set(f"Restoring… {payload:.0%}")
                else:
                    finished = (kind, payload)
        except queue.Empty:
            pass
        if finished is None:
            self.root.after(POLL_MS, self._poll)
            return
        kind, payload = finished
        self.progress.stop()
        self.progress.configure(mode="determinate", value=100 if kind == "done" else 0)
        if kind == "done":
            self.out_title.set(f"Output ({self._size(payload)})")
            self.status_var.set(f"Done in {job.seconds:.1f} s")
            self._refresh_model_label()
            self.redraw()
        elif kind == "cancelled":
            self.status_var.set("Cancelled.")
        else:
            self._error(payload)
        self._refresh_buttons()
        if self.on_finished is not None:
            self.on_finished(kind)

    def ask_save(self) -> None:
        default = self.ctl.default_save_path()
        path = filedialog.asksaveasfilename(
            title="Save output",
            initialdir=os.path.dirname(default),
            initialfile=os.path.basename(default),
            defaultextension=".png",
            filetypes=[("PNG", "*.png"), ("JPEG", "*.jpg"), ("TIFF", "*.tif"), ("All files", "*")],
        )
        if path:
            self.save(path)

    def save(self, path: str) -> bool:
        try:
            self.ctl.save(path)
        except Exception as e:
            self._error(error_message(e))
            return False
        self.status_var.set(f"Saved {path}")
        return True


# --- entry point ------------------------------------------------------------------------


def main(argv: list | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="ppRestore: restore one image in a small window.")
    p.add_argument("-c", "--config", default=None, help="model config (YAML)")
    p.add_argument("--model_path", default=None, help="weights: file, https URL or zoo name")
    p.add_argument("--model_dir", default=None, help="an exported model folder (deploy.yaml)")
    p.add_argument("-o", "--opts", nargs="+", default=[], help="config overrides key.sub=value")
    p.add_argument("--device", default="cpu", help="cpu or gpu")
    p.add_argument("--tile", default="off", help="off, auto or a tile size in pixels")
    p.add_argument("--self_ensemble", action="store_true", help="average the 8 flips/rotations")
    p.add_argument("--image_path", default=None, help="open this image at start")
    p.add_argument("--geometry", default="1100x620", help="window size, Tk geometry string")
    p.add_argument(
        "--selftest",
        metavar="IMAGE",
        default=None,
        help="open IMAGE, restore, save to --selftest_out and quit (exit code 0 on success)",
    )
    p.add_argument("--selftest_out", default="selftest_restored.png")
    p.add_argument("--screenshot", default=None, help="with --selftest: save a PNG of the window")
    args = p.parse_args(argv)
    if args.model_dir and (args.config or args.model_path):
        p.error("give --model_dir, or -c/--config with --model_path, not both")

    ctl = GuiController(
        ModelSpec(args.config, args.model_path, args.model_dir, args.device, tuple(args.opts)),
        tile=args.tile,
        self_ensemble=args.self_ensemble,
    )
    try:
        root = tk.Tk()
    except tk.TclError as e:
        print(f"error: cannot open a window ({e}); is a display available?", file=sys.stderr)
        return 1
    root.geometry(args.geometry)
    app = RestoreApp(root, ctl)
    if args.selftest:
        from .selftest import selftest

        selftest(app, args.selftest, args.selftest_out, args.screenshot)
    elif args.image_path:
        root.after(100, lambda: app.open_image(args.image_path))
    root.mainloop()
    if args.selftest:
        return root._selftest_result["code"]  # type: ignore[attr-defined]
    return 0
