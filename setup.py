"""Install ppRestore: ``pip install -e .`` (extras: ``[test]``, ``[convert]``, ``[onnx]``, ``[raw]``, ``[webui]``, ``[browser]``).

On a CUDA machine install ``paddlepaddle-gpu`` first and set ``PPRESTORE_SKIP_PADDLE=1``
so pip does not add the CPU ``paddlepaddle`` wheel beside it (AI Studio ships the GPU one).
"""

import os
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# The pins resolve together on CPython 3.11 (``pip check`` clean):
# paddleseg 2.8.0 requires opencv-python<=4.6.0, whose wheels need numpy<2;
# visualdl pulls pandas, whose 3.x needs numpy>=2, hence pandas<3.
# Supported Paddle range (also ppRestore/__init__.py, which refuses others at import):
# 2.6.2 is the lowest end, tested in CI on a smoke subset (tests/test_paddle_smoke.py).
PADDLE = ["paddlepaddle>=2.6.2,<3.4"]
INSTALL_REQUIRES = [
    "paddleseg==2.8.0",
    "numpy>=1.23,<2",
    "opencv-python<=4.6.0",
    "visualdl>=2.5,<2.6",
    "pandas<3",
    "pyyaml>=5.1",
    "tqdm",
    "Pillow>=9",
    "safetensors>=0.4",
]

EXTRAS = {
    # torch is only needed to read foreign PyTorch checkpoints in tools/convert_weights.py.
    "convert": ["torch"],
    # ml-dtypes 0.5+ (pulled by paddle2onnx via onnx_graphsurgeon) needs numpy>=2, which breaks opencv<=4.6.
    "onnx": ["paddle2onnx>=2", "onnxruntime", "ml-dtypes<0.5"],
    "raw": ["rawpy"],
    "test": ["pytest>=7", "hypothesis>=6", "scikit-image>=0.21"],
    # the browser page (tools/webui.py); 6.31 resolves with numpy<2, pandas<3, opencv<=4.6
    "webui": ["gradio>=6.31,<7"],
    # the browser test drives the system's chromium + chromedriver (apt), never a download
    "browser": ["selenium>=4.20,<5"],
}

setup(
    name="ppRestore",
    version=(HERE / "ppRestore" / "VERSION").read_text().strip(),
    description="PaddlePaddle image restoration: CMFNet, PmrNet, SRCNN, DnCNN, U-Net, DMCNN",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ppRestore", "ppRestore.*"]),
    package_data={"ppRestore": ["VERSION"]},
    python_requires=">=3.9",
    install_requires=([] if os.environ.get("PPRESTORE_SKIP_PADDLE") else PADDLE) + INSTALL_REQUIRES,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
