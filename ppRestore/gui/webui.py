"""A web page to restore images in the browser: ``python tools/webui.py`` (Gradio).

For AI Studio notebooks, remote GPU boxes and anyone without a display, where the Tk
window (:mod:`.app`) cannot open. The page is a thin view: every restore goes through
the desktop GUI's :class:`.controller.GuiController` (and so the one
:class:`~ppRestore.inference.predictor.Predictor`); weights go through the same
``--model_path`` resolution as the CLIs (shipped file, zoo name, https URL, local file).

Two layers, so the logic is tested without a browser:

* :class:`WebRestorer` (:mod:`.web_restorer`, tasks in :mod:`.web_tasks`) — no Gradio:
  tasks, weights (with a download status), one controller per task, previews, the
  download file, one-line errors.
* :func:`build_app` / :func:`launch` — the Gradio page around it (Gradio is imported
  only here, so ``pip install -e ".[webui]"`` is optional).

The server binds 127.0.0.1 unless ``host`` says otherwise; bound to another address it
refuses server-side paths and URLs typed into the weights box (zoo names and uploaded
files only), so a visitor cannot make it read files or fetch URLs.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from .controller import TILE_CHOICES
from .web_restorer import PATTERNS, WebError, WebRestorer, WebResult, is_loopback, preview_pair
from .web_tasks import Task, default_tasks

# The page's logic lives in .web_restorer and .web_tasks; their names stay importable here.
__all__ = [
    "Task",
    "WebError",
    "WebRestorer",
    "WebResult",
    "build_app",
    "default_tasks",
    "is_loopback",
    "launch",
    "preview_pair",
]

# --- the Gradio page ------------------------------------------------------------------

CSS = "#status textarea {font-family: monospace}"


def build_app(restorer: WebRestorer, title: str = "ppRestore"):
    """The Gradio Blocks page around ``restorer`` (imports Gradio)."""
    import gradio as gr

    labels = [t.label for t in restorer.tasks]
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            "## ppRestore: restore an image in the browser\n"
            "Pick a task, upload an image (a `.npy`/`.dng` Bayer frame for raw denoising), "
            "press **Restore**, compare with the slider, download the result."
        )
        with gr.Row():
            with gr.Column(scale=1):
                ui = _task_column(gr, restorer, labels)
            with gr.Column(scale=2):
                ui.update(_run_column(gr))
        _wire(gr, restorer, ui)
    return app


def _task_column(gr: Any, restorer: WebRestorer, labels: List[str]) -> Dict[str, Any]:
    """Left column: the task list, its description, weights and options."""
    ui = {"task": gr.Radio(labels, value=labels[0], label="Task", elem_id="task")}
    ui["about"] = gr.Markdown(restorer.describe(labels[0]), elem_id="about")
    with gr.Accordion("Weights and options", open=False):
        ui["weights_text"] = gr.Textbox(
            label="Weights: zoo name"
            + (", local file or https URL" if restorer.allow_server_paths else "")
            + " (empty: the task's default)",
            elem_id="weights_text",
        )
        ui["weights_file"] = gr.File(
            label="...or upload weights (.pdparams / .safetensors)",
            elem_id="weights_file",
            type="filepath",
        )
        ui["tile"] = gr.Dropdown(
            list(TILE_CHOICES), value="off", label="Tile (px; auto: fit memory)"
        )
        ui["ensemble"] = gr.Checkbox(label="Self-ensemble (8 flips/rotations, 8x slower)")
        with gr.Row():
            ui["iso"] = gr.Number(1600, label="Raw: ISO", minimum=1)
            ui["pattern"] = gr.Dropdown(list(PATTERNS), value="RGGB", label="Raw: CFA")
    return ui


def _run_column(gr: Any) -> Dict[str, Any]:
    """Right column: upload, the Restore button, status, before/after slider, downloads."""
    ui: Dict[str, Any] = {}
    with gr.Row(equal_height=True):
        ui["upload"] = gr.File(label="Input file", elem_id="input_file", type="filepath", scale=1)
        with gr.Column(scale=1):
            ui["run"] = gr.Button("Restore", variant="primary", elem_id="run")
            ui["status"] = gr.Textbox(
                label="Status", interactive=False, elem_id="status", max_lines=3
            )
    ui["compare"] = gr.ImageSlider(
        label="Before / after", elem_id="compare", type="numpy", interactive=False
    )
    ui["files"] = gr.File(
        label="Download",
        elem_id="output_file",
        file_count="multiple",
        interactive=False,
    )
    return ui


def _wire(gr: Any, restorer: WebRestorer, ui: Dict[str, Any]) -> None:
    """Events: choosing a task describes it; Restore runs it (one at a time)."""

    def on_task(label: str) -> str:
        return restorer.describe(label)

    # Gradio finds the progress tracker by this default value
    track = gr.Progress()

    def on_run(label, path, wfile, wtext, tile_v, ens, iso_v, pat, progress=track):
        def report(frac: float | None, msg: str) -> None:
            progress(frac, desc=msg)

        res, msg = restorer.run_safe(
            label, path, wfile, wtext or "", tile_v, bool(ens), iso_v or 0, pat, report
        )
        if res is None:
            return None, None, msg
        return (res.before, res.after), res.files, msg

    ui["task"].change(on_task, ui["task"], ui["about"])
    # in on_run's argument order
    inputs = (
        "task",
        "upload",
        "weights_file",
        "weights_text",
        "tile",
        "ensemble",
        "iso",
        "pattern",
    )
    ui["run"].click(
        on_run,
        [ui[k] for k in inputs],
        [ui["compare"], ui["files"], ui["status"]],
        concurrency_limit=1,
    )


def launch(
    config: str | None = None,
    model_path: str | None = None,
    model_dir: str | None = None,
    opts: Tuple[str, ...] = (),
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "cpu",
    max_upload_mb: float = 200.0,
    inline: bool | None = None,
    block: bool = True,
):
    """Serve the page (also from a notebook cell: ``launch(inline=True, block=False)``).

    ``config`` + ``model_path`` (or ``model_dir``) add a "Command-line model" task,
    listed and selected first. Returns the Gradio app (call ``app.close()`` to stop it).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    tasks = default_tasks()
    if config or model_dir:
        # paths from the command line are relative to where it was typed
        config = os.path.abspath(config) if config else None
        model_dir = os.path.abspath(model_dir) if model_dir else None
        if model_path and os.path.exists(model_path):
            model_path = os.path.abspath(model_path)
        name = os.path.basename(model_dir or config)
        tasks.insert(
            0, Task(f"Command-line model ({name})", config, model_path, tuple(opts), model_dir)
        )
    restorer = WebRestorer(
        tasks, device=device, allow_server_paths=is_loopback(host), max_upload_mb=max_upload_mb
    )
    app = build_app(restorer)
    app.queue(default_concurrency_limit=1, max_size=32)
    app.launch(
        server_name=host,
        server_port=port,
        inline=inline,
        share=False,
        prevent_thread_lock=not block,
        max_file_size=f"{int(max_upload_mb)}mb",
        allowed_paths=[restorer.work_dir],
        quiet=False,
        ssr_mode=False,  # plain server-side page: no Node.js process
        css=CSS,
    )
    return app
