"""Measure converted DnCNN-S (sigma = 25) on Set12 against the paper's 30.44 dB.

Protocol (as SaoYan's ``test.py`` and the DnCNN paper's MATLAB demo):
* clean = grey uint8 image / 255 (float32);
* noisy = clean + N(0, sigma/255), drawn with ``np.random.default_rng(seed)`` re-seeded
  with the same seed for every image; the noisy image is NOT clipped or quantised;
* output = clip(model(noisy), 0, 1); PSNR with peak 1 on the full image (no border crop).
A second figure quantises the output to uint8 first (KAIR's convention).

Weights: ``--weights`` is a SaoYan checkpoint in its official key names, either the
committed parity fixture ``tests/fixtures/dncnn_saoyan_s25.npz`` (default: it holds the
full real DnCNN-S-25 weights, keys prefixed ``w:``) or a ``.pdparams``/``.safetensors``
already converted by ``tools/convert_weights.py`` (read with ppRestore's safe loader).
Other SaoYan checkpoints (DnCNN-B, S-15, S-50; pre-1.6 torch pickles) can be dumped to
the same ``w:``-prefixed npz layout with torch, e.g.
``np.savez(out, **{"w:" + k: v.numpy() for k, v in torch.load(pth, weights_only=True).items()})``;
pass ``--num_layers 20`` for DnCNN-B.

Run:  PYTHONPATH=. python benchmarks/eval_dncnn_set12.py --data ../shared/data/set12
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/set12")
    ap.add_argument("--weights", default="tests/fixtures/dncnn_saoyan_s25.npz")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num_layers", type=int, default=17)
    a = ap.parse_args()

    import numpy as np
    import paddle

    from ppRestore.data.io import list_images, read_image
    from ppRestore.models.dncnn import DnCNN, convert_dncnn_saoyan
    from ppRestore.weights.safe_load import load_state_dict, load_weights

    model = DnCNN(num_layers=a.num_layers)
    if a.weights.endswith(".npz"):
        with np.load(a.weights, allow_pickle=False) as d:
            state = convert_dncnn_saoyan(
                {k[2:]: d[k] for k in d.files if k.startswith("w:")}, model
            )
    else:
        state = load_weights(a.weights)
        if any(k.startswith(("module.", "dncnn.")) for k in state):
            state = convert_dncnn_saoyan(state, model)
    load_state_dict(model, state, source=a.weights)
    model.eval()

    psnr_f, psnr_u8, t0 = [], [], time.time()
    for path in list_images(a.data):
        img = read_image(path).data
        clean = img[..., 0].astype(np.float32) / 255.0  # Set12 is grey
        rng = np.random.default_rng(a.seed)
        noisy = clean + rng.normal(0.0, a.sigma / 255.0, clean.shape).astype(np.float32)
        with paddle.no_grad():
            out = model(paddle.to_tensor(noisy[None, None])).numpy()[0, 0]
        out = np.clip(out, 0.0, 1.0)
        mse = float(np.mean((out.astype(np.float64) - clean) ** 2))
        mse8 = float(np.mean((np.round(out * 255.0) - img[..., 0].astype(np.float64)) ** 2))
        psnr_f.append(10 * np.log10(1.0 / mse))
        psnr_u8.append(10 * np.log10(255.0**2 / mse8))
        print(
            f"{os.path.basename(path)}  {psnr_f[-1]:.3f} dB  (uint8 out: {psnr_u8[-1]:.3f})",
            flush=True,
        )
    # Set12 averages from the DnCNN paper (TIP 2017, Table II; as listed in SaoYan's README).
    paper = {17: {15: 32.859, 25: 30.436, 50: 27.178}, 20: {15: 32.680, 25: 30.362, 50: 27.206}}
    ref = paper.get(a.num_layers, {}).get(int(a.sigma)) if float(a.sigma).is_integer() else None
    kind = {17: "DnCNN-S", 20: "DnCNN-B"}.get(a.num_layers, f"DnCNN-{a.num_layers}")
    ref_txt = f"; paper {kind}: {ref:.2f} dB (diff {np.mean(psnr_f) - ref:+.3f})" if ref else ""
    print(
        f"Set12 sigma={a.sigma:g}: mean PSNR {np.mean(psnr_f):.3f} dB (float output), "
        f"{np.mean(psnr_u8):.3f} dB (uint8 output){ref_txt}; {len(psnr_f)} images, "
        f"{time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
