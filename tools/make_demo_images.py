"""Regenerate the demo inputs in ``demo/`` (reproducible: fixed seed).

The clean photos are scikit-image's bundled ``chelsea`` and ``coffee`` (public domain,
shipped inside the scikit-image wheel, so no download); the demo inputs are these photos
with seeded Gaussian noise of sigma 25 (on the 0-255 scale), the degradation the demo
colour denoiser (configs/demo.yml) was trained for.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="demo")
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=2022)
    args = p.parse_args()

    import skimage.data

    from ppRestore.data.io import write_image

    rng = np.random.default_rng(args.seed)
    for name in ("chelsea", "coffee"):
        clean = getattr(skimage.data, name)().astype(np.float64)
        noisy = np.clip(clean + rng.normal(0.0, args.sigma, clean.shape), 0, 255)
        write_image(os.path.join(args.out, f"{name}_noisy.png"), (noisy + 0.5).astype(np.uint8))
        print("wrote", os.path.join(args.out, f"{name}_noisy.png"), clean.shape)


if __name__ == "__main__":
    main()
