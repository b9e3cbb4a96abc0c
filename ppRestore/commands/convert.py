"""Convert an official (PyTorch, MegEngine, ...) checkpoint into ppRestore weights.

The source (which official code wrote the file) is detected from the file itself;
``--source`` only overrides it. Examples::

    python tools/convert_weights.py --arch cmfnet --src deblur_GoPro_CMFNet.pth \
        --dst cmfnet_deblur.pdparams
    python tools/convert_weights.py --arch dncnn --src logs/DnCNN-B/net.pth \
        --dst dncnn_b.pdparams -o model.num_layers=20
    python tools/convert_weights.py --arch cmfnet --src tiny.pth --dst tiny.pdparams \
        -o model.n_feat=8 model.scale_unetfeats=3

Conversion is optional: every tool also takes the foreign file directly
(``--model_path deblur_GoPro_CMFNet.pth``) and converts it once into its cache.
"""

from __future__ import annotations

import argparse
import os


def _arch_table() -> str:
    """'architectures and sources' block for --help, read from the model files."""
    try:
        from ppRestore.registry import ARCHS

        lines = ["architectures (--arch) and the sources each converts from (--source):"]
        for name in ARCHS.keys():
            a = ARCHS.get(name)
            srcs = ", ".join(f"{s.name}" + (f" [{s.url}]" if s.url else "") for s in a.sources)
            lines.append(f"  {name:<9} -> {a.model}: {srcs or 'own key names (no conversion)'}")
        return "\n".join(lines)
    except Exception as e:  # noqa: BLE001 - --help must work even if a model is broken
        return f"(architecture list unavailable: {e})"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__,
        epilog=_arch_table() if argv is None or "-h" in argv or "--help" in argv else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", required=True, help="architecture, e.g. cmfnet (list below)")
    p.add_argument("--src", required=True, help="foreign checkpoint (.pth/.pt/.npz/.safetensors)")
    p.add_argument("--dst", required=True, help="output .pdparams or .safetensors")
    p.add_argument(
        "--source",
        default=None,
        help="force a source (default: detected from the file), e.g. saoyan, kair, mge",
    )
    p.add_argument("--key", default=None, help="checkpoint entry holding the weights")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "zip"],
        help="torch zip reader: torch.load (weights_only) or the torch-free reader",
    )
    p.add_argument(
        "--model_kwargs",
        default=None,
        help="constructor overrides as YAML/JSON, e.g. '{\"n_feat\": 16}'",
    )
    p.add_argument(
        "-o",
        "--opts",
        nargs="+",
        default=[],
        help="constructor overrides model.KEY=VALUE (e.g. model.n_feat=16)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ppRestore.errors import run_cli

    return run_cli(_run, args, prefix="convert_weights: error")


def _run(args: argparse.Namespace) -> int:
    import yaml

    from ppRestore.config import ConfigError, parse_override
    from ppRestore.weights.convert import convert_checkpoint
    from ppRestore.weights.safe_load import WeightsError

    kwargs = {}
    if args.model_kwargs:
        kw = yaml.safe_load(args.model_kwargs)
        if not isinstance(kw, dict):
            raise ConfigError(f"--model_kwargs must be a mapping, got {args.model_kwargs!r}")
        kwargs.update(kw)
    for item in args.opts:
        parts, value = parse_override(item)
        if len(parts) != 2 or parts[0] != "model":
            raise ConfigError(f"override '{item}': only model.KEY=VALUE is accepted here")
        kwargs[parts[1]] = value
    try:
        info = convert_checkpoint(
            args.arch,
            args.src,
            args.dst,
            source=args.source,
            model_kwargs=kwargs,
            key=args.key,
            backend=args.backend,
        )
    except (WeightsError, ValueError) as e:
        msg = " ".join(str(e).split())  # one line, whatever the library said
        if os.path.basename(args.src) not in msg:
            msg = f"{args.src}: {msg}"
        raise type(e)(msg) if isinstance(e, WeightsError) else WeightsError(msg) from None
    except (KeyError, AssertionError, IndexError, TypeError) as e:
        # Last resort for a file no reader anticipated: still one line naming it.
        raise WeightsError(
            f"{args.src}: not a {args.arch} checkpoint this tool can read ({type(e).__name__}: {e})"
        ) from None
    src = f"source '{info['source']}'" if info.get("source") else "own key names"
    print(
        f"converted {info['src']} -> {info['dst']} ({args.arch}, {src}: {info['num_tensors']} "
        f"tensors, {info['num_params']:,} parameters)"
    )
    return 0
