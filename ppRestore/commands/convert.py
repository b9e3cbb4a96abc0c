"""Convert an official (PyTorch, ...) checkpoint into ppRestore weights.

Example::

    python tools/convert_weights.py --arch cmfnet --src deblur_model.pth \
        --dst cmfnet_deblur.pdparams
    python tools/convert_weights.py --arch cmfnet --src tiny.pth --dst tiny.pdparams \
        -o model.n_feat=8 model.scale_unetfeats=3
"""

from __future__ import annotations

import argparse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Convert a foreign checkpoint to .pdparams/.safetensors"
    )
    p.add_argument("--arch", required=True, help="architecture, e.g. cmfnet")
    p.add_argument("--src", required=True, help="foreign checkpoint (.pth/.pt/.npz/.safetensors)")
    p.add_argument("--dst", required=True, help="output .pdparams or .safetensors")
    p.add_argument("--source", default=None, help="converter variant: uses '<arch>:<source>'")
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
    except WeightsError as e:
        if "mismatched key" not in str(e):
            raise
        raise type(e)(
            f"{e} (a reduced-width checkpoint? pass its constructor args, e.g. -o model.n_feat=16)"
        ) from None
    print(
        f"converted {info['src']} -> {info['dst']} ({args.arch}: {info['num_tensors']} "
        f"tensors, {info['num_params']:,} parameters)"
    )
    return 0
