"""Install ppRestore: ``pip install -e .`` (extras: ``[test]``, ``[convert]``, ``[onnx]``, ``[raw]``, ``[tune]``).

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
PADDLE = ["paddlepaddle>=3.0,<3.4"]
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
    # tools/tune.py: Optuna study + its matplotlib plots (optuna 3.6-5.x work with numpy<2)
    "tune": ["optuna>=3.6,<6", "matplotlib>=3.5"],
    "test": ["pytest>=7", "hypothesis>=6", "scikit-image>=0.21"],
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
