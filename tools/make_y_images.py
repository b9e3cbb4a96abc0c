"""Write the MATLAB Y channel (BT.601, 16-235, uint8) of every RGB image in a folder.

Super-resolution papers (SRCNN, VDSR, ...) measure PSNR on the Y channel of MATLAB's
``rgb2ycbcr`` and degrade that Y channel with MATLAB ``imresize``. A ``channels: 1``
dataset on an RGB folder gives full-range BT.601 luma instead (about 1.3 dB lower PSNR
for the same error), so the SR configs validate on a folder written by this tool:

``python tools/make_y_images.py ../shared/data/set5 ../shared/data/set5_y``

Greyscale inputs are copied unchanged (their value is taken as Y).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="folder of RGB images")
    p.add_argument("dst", help="output folder (PNG, one channel)")
    args = p.parse_args(argv)

    from ppRestore.data.color import rgb2y
    from ppRestore.data.io import list_images, read_image, write_image

    os.makedirs(args.dst, exist_ok=True)
    for path in list_images(args.src):
        img = read_image(path).data
        if img.ndim == 3 and img.shape[2] == 3:
            y = rgb2y(img)  # uint8 in, rounded uint8 out (MATLAB semantics)
        else:
            y = img.reshape(img.shape[:2])
        out = os.path.join(args.dst, os.path.splitext(os.path.basename(path))[0] + ".png")
        write_image(out, y)
        print("wrote", out, y.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
