"""Restore images with an exported model (OpenVINO, Paddle Inference or ONNX Runtime).

    python deploy/python/infer.py --config output/export/deploy.yaml \
        --image_path photos/ --save_dir output/restored [--cpu_threads 2] \
        [--backend auto|paddle|onnx|openvino] [--precision fp32|bf16|fp16|int8] \
        [--use_trt] [--device gpu] [--benchmark]

The pre/post-processing, tiling and batch handling are ppRestore's (the same code as
tools/infer.py), only the engine differs: ``--backend auto`` takes OpenVINO on CPU when
it is installed and the export has model.onnx (the fastest measured), else Paddle
Inference with oneDNN; CUDA/TensorRT (dynamic shapes) on GPU. int8 on CPU needs an
export made with ``--quantize int8``. ``--benchmark`` prints the per-image latency.

Under ``python -m paddle.distributed.launch --nproc_per_node N deploy/python/infer.py
...`` each process restores its share of the files and rank 0 prints one summary.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    from ppRestore.inference.cli import add_common_args

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", required=True, help="deploy.yaml of an exported model (or its folder)"
    )
    add_common_args(p)
    p.add_argument(
        "--cpu_threads", type=int, default=None, help="CPU math threads (default: all cores)"
    )
    # oneDNN is on by default; the flag PaddleSeg users type is accepted and does nothing.
    p.add_argument("--enable_mkldnn", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--disable_mkldnn", action="store_true", help="plain CPU kernels (slow; for debugging)"
    )
    p.add_argument(
        "--use_trt", action="store_true", help="TensorRT subgraphs on GPU (dynamic shapes)"
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8"])
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "paddle", "onnx", "openvino"],
        help="auto (default: the fastest installed engine for the device and precision; "
        "OpenVINO on CPU when installed), paddle (Paddle Inference), onnx (ONNX Runtime) "
        "or openvino (OpenVINO on model.onnx)",
    )
    p.add_argument(
        "--benchmark", action="store_true", help="print per-image latency (after one warm-up run)"
    )
    args = p.parse_args(argv)

    from ppRestore.errors import run_cli

    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from ppRestore.errors import first_line
    from ppRestore.inference.cli import check_raw_args, infer_overrides, run_and_report
    from ppRestore.inference.predictor import Predictor

    try:
        predictor = Predictor.from_exported(
            args.config,
            backend=args.backend,
            device=args.device,
            cpu_threads=args.cpu_threads,
            enable_mkldnn=not args.disable_mkldnn,
            precision=args.precision,
            use_trt=args.use_trt,
            **infer_overrides(args),
        )
    except RuntimeError as e:  # Paddle Inference: a corrupt model.json (a C++ trace)
        raise RuntimeError(f"{args.config}: cannot load the model ({first_line(e)})") from None
    problem = check_raw_args(predictor, args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.benchmark:
        return benchmark(predictor, args)
    return run_and_report(predictor, args)


def benchmark(predictor, args) -> int:
    """Restore each image (after a warm-up on the first) and report timings."""
    import time

    from ppRestore.inference.cli import is_raw, run_files
    from ppRestore.inference.memory import peak_rss

    times = []
    if is_raw(predictor):
        from ppRestore.data.raw_io import read_raw
        from ppRestore.inference.batch import list_raw_files

        def timed_raw(bayer, iso, pattern):
            t = time.perf_counter()
            out = predictor.restore_raw(bayer, iso, pattern)
            times.append(("frame", bayer.shape, time.perf_counter() - t))
            return out

        f0 = list_raw_files(args.image_path)[0]
        first = read_raw(f0, args.bayer_pattern if f0.lower().endswith(".npy") else None)
        predictor.restore_raw(first.bayer, args.iso, first.pattern)  # warm-up
        res = run_files(predictor, args, timed_raw, progress=False)
        names = [os.path.basename(f) for f, _ in res.restored]
        times = [(n,) + t[1:] for n, t in zip(names, times)]
    else:

        def timed(img):
            t = time.perf_counter()
            out = predictor.restore_image(img)
            times.append((img.path, img.data.shape, time.perf_counter() - t))
            return out

        from ppRestore.data.io import list_images, read_image

        first = list_images(args.image_path)[0]
        predictor.restore_image(read_image(first))  # warm-up: oneDNN builds its kernels here
        res = run_files(predictor, args, timed, progress=False)
    for path, shape, t in times:
        print(f"{os.path.basename(path)}  {shape[1]}x{shape[0]}  {t * 1000:.1f} ms")
    if times:
        ts = sorted(t for _, _, t in times)
        print(
            f"{predictor.describe()} precision {args.precision}: median {ts[len(ts) // 2] * 1000:.1f} ms "
            f"over {len(ts)} image(s); peak RSS {peak_rss() / 2**20:.0f} MiB"
        )
    print(res.summary(), file=sys.stderr)
    return res.exit_code


if __name__ == "__main__":
    sys.exit(main())
