"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel.

Each notebook is executed by ``nbclient`` in a fresh ``ipykernel`` (the ``test`` extra
installs both) with the notebook folder as the working directory, as a user who opens it
in Jupyter / AI Studio and presses "Run all". The default-parameter runs set **no**
``PPRESTORE_NB_*`` variable: they restore the demo photos with the shipped weights,
export and deploy the shipped model, and fine-tune the shipped DnCNN, and the tests check
what the notebooks printed and wrote. Outputs go to the repository's ``output/`` folder
(git-ignored), exactly where a user's run puts them.
"""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="pip install -e '.[test]'")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(f for f in os.listdir(NB_DIR) if f.endswith(".ipynb"))


def _env(**nb_vars: str) -> dict:
    """This process's environment without any PPRESTORE_NB_* / PPRESTORE_REPO, plus
    ``nb_vars``; the kernel runs this interpreter with a non-interactive matplotlib."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PPRESTORE_NB_", "PPRESTORE_REPO"))
    }
    env.update(nb_vars)
    env["MPLBACKEND"] = "Agg"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def execute(name: str, timeout: int = 900, **nb_vars: str) -> str:
    """Run notebook ``name`` top to bottom in a fresh kernel; return all text it printed.

    A cell that raises fails the test with the cell's traceback (nbclient's
    CellExecutionError).
    """
    nb = nbformat.read(os.path.join(NB_DIR, name), as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": NB_DIR}},
        # the kernel must be this interpreter (the venv with ppRestore's dependencies)
        kernel_manager_class=_this_python_kernel(),
    )
    client.execute(env=_env(**nb_vars))
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out.get("text", ""))
            elif out.get("output_type") in ("execute_result", "display_data"):
                text.append(out.get("data", {}).get("text/plain", ""))
    return "".join(text)


def _this_python_kernel():
    from jupyter_client.manager import KernelManager

    class _Here(KernelManager):
        """A python3 kernel started with ``sys.executable``, whatever kernelspecs the
        machine has installed elsewhere."""

        @property
        def kernel_spec(self):  # noqa: D102
            spec = super().kernel_spec
            spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
            return spec

    return _Here


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_and_compiles(name):
    from IPython.core.inputtransformer2 import TransformerManager

    with open(os.path.join(NB_DIR, name), encoding="utf-8") as f:
        nb = json.load(f)
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    tm = TransformerManager()
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        # committed notebooks carry no outputs (no stale results, small diffs)
        assert c["outputs"] == [] and c["execution_count"] is None
        compile(tm.transform_cell("".join(c["source"])), name, "exec")  # magics included
        # nothing reads a test-only variable without a default a user gets
        assert "os.environ[" not in "".join(c["source"]).replace(
            'os.environ["PPRESTORE_NB_TRAIN_OPTS"]', ""
        )


def _psnr_pairs(text: str) -> list:
    return [
        (float(a), float(b))
        for a, b in re.findall(r"input: ([\d.]+) dB.*?restored: ([\d.]+) dB", text)
    ]


@pytest.mark.slow
def test_quickstart_on_defaults_restores_demo_with_shipped_weights():
    out = execute("quickstart.ipynb")
    assert f"ppRestore checkout: {REPO}" in out  # found from notebooks/ as the cwd
    pairs = _psnr_pairs(out)
    assert len(pairs) == 2, out
    for before, after in pairs:
        assert after > before + 5, out  # 20.5 -> 28.4 dB with the shipped U-Net
    for f in ("chelsea_noisy.png", "coffee_noisy.png"):
        assert os.path.isfile(os.path.join(REPO, "output", "quickstart", f))


@pytest.mark.slow
def test_export_deploy_on_defaults_exports_and_deploys():
    out = execute("export_deploy.ipynb")
    m = re.search(r"max \|exported - dynamic\| = (\d+)", out)
    assert m and int(m.group(1)) <= 1, out
    assert "deployed output equals the Predictor's: True" in out, out
    assert os.path.isfile(os.path.join(REPO, "output", "nb_export", "deploy.yaml"))


@pytest.mark.slow
def test_train_denoiser_on_defaults_fine_tunes_and_gains():
    out = execute("train_denoiser.ipynb")
    m = re.search(r"input ([\d.]+) dB -> restored ([\d.]+) dB \(gain ([+-][\d.]+) dB\)", out)
    assert m, out
    assert float(m.group(3)) > 5, out  # the shipped weights, kept by the gentle fine-tune
    b = re.search(r"before fine-tuning: ([\d.]+) dB; the short run changed it by ([+-][\d.]+)", out)
    assert b and abs(float(b.group(2))) < 1.0, out  # a short run does not wreck the weights


def test_quickstart_without_weights_says_so(tmp_path):
    out = execute(
        "quickstart.ipynb",
        PPRESTORE_NB_CONFIG=str(tmp_path / "missing.yml"),
        PPRESTORE_NB_SAVE_DIR=str(tmp_path / "out"),
    )
    assert "The model is not available, so nothing was restored" in out
    assert "missing.yml" in out  # the library's message names the file
    assert not os.path.exists(tmp_path / "out")


def test_export_notebook_without_model_says_so(tmp_path):
    out = execute(
        "export_deploy.ipynb",
        PPRESTORE_NB_CONFIG=str(tmp_path / "missing.yml"),
        PPRESTORE_NB_EXPORT_DIR=str(tmp_path / "exp"),
    )
    assert "config file not found" in out and "Export failed" in out


def test_psnr_parser():
    assert _psnr_pairs("x ('input: 20.23 dB', 'restored: 28.35 dB')") == [(20.23, 28.35)]
    assert np.isfinite(_psnr_pairs("input: 1.5 dB restored: 2 dB")[0][1])
