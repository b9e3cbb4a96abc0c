"""Make the README's before/after pictures with the shipped models (reproducible).

* ``docs/images/readme_denoise.png`` — a crop of ``demo/chelsea_noisy.png`` (sigma 25) |
  the same crop restored by ``demo_color_denoise`` (the README's demo command).
* ``docs/images/readme_sr_x3.png`` — a crop of scikit-image's ``coffee`` (bundled with
  scikit-image, no download) shrunk 3x with MATLAB bicubic, shown enlarged with
  nearest-neighbour | bicubic x3 | ``srcnn_x3``.
* ``--screenshot SHOT.png`` also shrinks a browser-test screenshot
  (``tests/test_webui.py`` with ``PPRESTORE_SCREENSHOT_DIR``) into ``docs/images/webui.png``.

Every PNG is kept small (palette-free 8-bit RGB, crops of a few hundred pixels; the
screenshot is scaled and reduced to 256 colours).

    python tools/make_readme_images.py [--out docs/images] [--screenshot output/ci/webui.png]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a dark strip at the top of ``panel`` (PIL's built-in font)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(panel)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, panel.shape[1], 15], fill=(0, 0, 0))
    d.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(img)


def _side_by_side(panels, gap: int = 4) -> np.ndarray:
    h = panels[0].shape[0]
    sep = np.full((h, gap, 3), 255, np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=1)


def make_denoise(out: str) -> str:
    from ppRestore.data.io import read_image, write_image
    from ppRestore.inference import restore

    noisy = read_image(os.path.join(REPO, "demo", "chelsea_noisy.png")).data
    crop = np.ascontiguousarray(noisy[60:230, 150:370])  # the cat's face, 220 x 170
    den = restore(
        crop, config=os.path.join(REPO, "configs/demo.yml"), model_path="demo_color_denoise"
    )
    pic = _side_by_side(
        [_label(crop, "noisy input (sigma 25)"), _label(den, "demo_color_denoise (U-Net)")]
    )
    path = os.path.join(out, "readme_denoise.png")
    return write_image(path, pic)


def make_sr(out: str) -> str:
    import skimage.data

    from ppRestore.data.io import write_image
    from ppRestore.data.resize import imresize
    from ppRestore.inference import restore

    clean = skimage.data.coffee()[90:270, 180:420]  # 240 x 180, the cup's rim and spoon
    lr = np.clip(imresize(clean.astype(np.float64) / 255, scale=1 / 3), 0, 1)
    lr8 = (lr * 255 + 0.5).astype(np.uint8)  # 80 x 60
    sr = restore(
        lr8, config=os.path.join(REPO, "configs/srcnn/srcnn_x3.yml"), model_path="srcnn_x3"
    )
    near = np.repeat(np.repeat(lr8, 3, axis=0), 3, axis=1)
    bic = (np.clip(imresize(lr, scale=3), 0, 1) * 255 + 0.5).astype(np.uint8)
    pic = _side_by_side(
        [
            _label(near, "input 80x60 (nearest x3)"),
            _label(bic, "bicubic x3"),
            _label(sr, "srcnn_x3"),
        ]
    )
    return write_image(os.path.join(out, "readme_sr_x3.png"), pic)


def shrink_screenshot(src: str, out: str, width: int = 960) -> str:
    from PIL import Image

    img = Image.open(src).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img = img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = os.path.join(out, "webui.png")
    img.save(path, optimize=True)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(REPO, "docs", "images"))
    p.add_argument("--screenshot", help="a browser-test screenshot to shrink into OUT/webui.png")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    paths = [make_denoise(args.out), make_sr(args.out)]
    if args.screenshot:
        paths.append(shrink_screenshot(args.screenshot, args.out))
    for path in paths:
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
