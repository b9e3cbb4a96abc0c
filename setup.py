"""Install ppRestore: ``pip install -e .`` or ``pip install .`` (extras: ``[test]``, ``[convert]``,
``[onnx]``, ``[openvino]``, ``[raw]``, ``[paddleseg]``, ``[tune]``, ``[webui]``, ``[browser]``).
Installs the ``pprestore`` command.

On a CUDA machine install ``paddlepaddle-gpu`` first and set ``PPRESTORE_SKIP_PADDLE=1``
so pip does not add the CPU ``paddlepaddle`` wheel beside it (AI Studio ships the GPU one).
"""

import os
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent

# configs/ and pretrained/ stay at the repo root (docs, notebooks and users name
# ``configs/...``); a wheel carries copies under ppRestore/_data/, where
# ppRestore.resources finds them when there is no checkout (pip install . / a wheel).
PACKAGED_DATA = {"configs": ("*.yml",), "pretrained": ("*.pdparams", "*.safetensors", "*.md")}


class BuildPyWithData(build_py):
    """build_py that also copies the shipped configs and weights into the package."""

    def run(self):
        super().run()
        for folder, patterns in PACKAGED_DATA.items():
            src = HERE / folder
            dst = Path(self.build_lib) / "ppRestore" / "_data" / folder
            for pattern in patterns:
                for f in src.rglob(pattern):
                    target = dst / f.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, target)


# The pins resolve together on CPython 3.11 (``pip check`` clean). paddleseg is no longer
# required (nothing imports it; its opencv-python<=4.6.0 pin was what held opencv back):
# it is the optional ``[paddleseg]`` extra for a shared PaddleSeg environment. numpy<2
# stays for now (the tested range); with it pip resolves opencv-python 4.11.0.86 (4.12+
# needs numpy>=2). visualdl pulls pandas, whose 3.x needs numpy>=2, hence pandas<3.
# Supported Paddle range (also ppRestore/__init__.py, which refuses others at import):
# 2.6.2 is the lowest end, tested in CI on a smoke subset (tests/test_paddle_smoke.py).
PADDLE = ["paddlepaddle>=2.6.2,<3.4"]
INSTALL_REQUIRES = [
    "numpy>=1.23,<2",
    "opencv-python>=4.5",
    "visualdl>=2.5,<2.6",
    "pandas<3",
    "pyyaml>=5.1",
    "tqdm",
    "Pillow>=9",
    "safetensors>=0.4",
]

EXTRAS = {
    # torch is optional even for conversion: zip and legacy torch files, MegEngine pickles
    # are read torch-free; with torch installed, torch.load(weights_only=True) is used.
    "convert": ["torch"],
    # ml-dtypes 0.5+ (pulled by paddle2onnx via onnx_graphsurgeon) needs numpy>=2, which breaks opencv<=4.6.
    "onnx": ["paddle2onnx>=2", "onnxruntime", "ml-dtypes<0.5"],
    # OpenVINO runs the ONNX export (fp32, bf16 hint, int8 QDQ): the fastest CPU engine
    # measured (docs/benchmarks.md); --backend auto uses it when installed. Needs [onnx].
    "openvino": ["openvino>=2024.0"],
    "raw": ["rawpy"],
    # PaddleSeg in the same environment (it brings back opencv-python<=4.6.0).
    "paddleseg": ["paddleseg==2.8.0"],
    # wheel: tests/test_wheel.py builds the wheel offline (--no-build-isolation);
    # nbclient + ipykernel: tests/test_notebooks.py runs the notebooks in a real kernel.
    "test": [
        "pytest>=7",
        "hypothesis>=6",
        "scikit-image>=0.21",
        "wheel",
        "nbclient>=0.7",
        "nbformat>=5",
        "ipykernel>=6",
    ],
    # the browser page (tools/webui.py); 6.31 resolves with numpy<2, pandas<3
    "webui": ["gradio>=6.31,<7"],
    # the browser test drives the system's chromium + chromedriver (apt), never a download
    "browser": ["selenium>=4.20,<5"],
    # tools/tune.py: Optuna study + its matplotlib plots (optuna 3.6-5.x work with numpy<2)
    "tune": ["optuna>=3.6,<6", "matplotlib>=3.5"],
}

setup(
    name="ppRestore",
    version=(HERE / "ppRestore" / "VERSION").read_text().strip(),
    description="PaddlePaddle image restoration: CMFNet, PmrNet, SRCNN, DnCNN, U-Net, DMCNN",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ppRestore", "ppRestore.*"]),
    package_data={"ppRestore": ["VERSION"]},
    cmdclass={"build_py": BuildPyWithData},
    entry_points={"console_scripts": ["pprestore=ppRestore.commands:main"]},
    python_requires=">=3.9",
    install_requires=([] if os.environ.get("PPRESTORE_SKIP_PADDLE") else PADDLE) + INSTALL_REQUIRES,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
