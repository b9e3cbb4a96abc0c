"""Restore images in the browser: ``python tools/webui.py [-c CONFIG --model_path W] [--host 127.0.0.1] [--port 7860]``.

A Gradio page (``pip install -e ".[webui]"``) for machines without a display (AI Studio,
remote GPU boxes): denoise, super-resolve, deblur/dehaze/deraindrop, remove handwriting,
denoise raw frames. It binds 127.0.0.1 unless --host says otherwise. See docs/webui.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", help="add a task for this config (with --model_path)")
    p.add_argument("--model_path", help="weights for --config: file, https URL or zoo name")
    p.add_argument("--model_dir", help="add a task for an exported model folder (deploy.yaml)")
    p.add_argument("-o", "--opts", nargs="*", default=[], help="config overrides key=value")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="cpu", help="cpu or gpu")
    p.add_argument(
        "--max_upload_mb", type=float, default=200.0, help="upload size limit in MB (default 200)"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for flag, path, isdir in (("-c", args.config, False), ("--model_dir", args.model_dir, True)):
        if path and not (os.path.isdir(path) if isdir else os.path.isfile(path)):
            print(f"error: {flag} {path}: not found", file=sys.stderr)
            return 2
    if not 0 < args.port < 65536:
        print(f"error: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    if not args.max_upload_mb > 0:
        print("error: --max_upload_mb must be positive", file=sys.stderr)
        return 2
    try:
        import gradio  # noqa: F401
    except ImportError as e:
        print(f'error: the web UI needs Gradio ({e}): pip install -e ".[webui]"', file=sys.stderr)
        return 1
    from ppRestore.gui.webui import launch

    try:
        launch(
            args.config,
            args.model_path,
            args.model_dir,
            tuple(args.opts),
            host=args.host,
            port=args.port,
            device=args.device,
            max_upload_mb=args.max_upload_mb,
        )
    except OSError as e:  # port taken, address not available
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
