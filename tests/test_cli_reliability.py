"""Bad inputs through the command-line tools, as a user runs them.

Every failure must be one ``error:``/``FAILED`` line naming the file or key, with a
non-zero exit code and no Python traceback. Subprocess runs are few (each pays the
Paddle import); the rest call ``main()`` in-process, where a traceback would surface
as an exception and fail the test the same way.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from tests.helpers import run_cli, run_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MALICIOUS = os.path.join(REPO, "tests", "fixtures", "malicious")


def _error_lines(stderr: str) -> list:
    return [ln for ln in stderr.splitlines() if ln.startswith(("error:", "FAILED"))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-layer colour DnCNN with random weights, its config, and a val config."""
    import paddle  # noqa: F401 - a hard dependency: fail, not skip, when broken

    from ppRestore.builder import build_model
    from ppRestore.weights.safe_load import save_weights

    d = tmp_path_factory.mktemp("cli_rel")
    model_cfg = {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4}
    save_weights(build_model(model_cfg).state_dict(), str(d / "w.pdparams"))
    (d / "model.yml").write_text(yaml.safe_dump({"model": model_cfg}), encoding="utf-8")
    return d


def _val_cfg(d, root) -> str:
    cfg = {
        "model": {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4},
        "val_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": str(root),
            "channels": 3,
            "degradations": [{"type": "GaussianNoise", "sigma": 25}],
        },
    }
    p = d / f"val_{abs(hash(str(root)))}.yml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(p)


# ---------------------------------------------------------------- tools/val.py


def test_val_bad_image_in_the_set_is_one_line(tiny, bad_images_dir, tmp_path):
    r = run_cli(
        "tools/val.py", "-c", _val_cfg(tmp_path, bad_images_dir),
        "--model_path", str(tiny / "w.pdparams"), "--save_dir", str(tmp_path / "out"),
        cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 2, r.stderr  # a bad input, as in train.py (ppRestore.errors)
    assert "Traceback" not in r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and "empty.png: empty file" in errs[0], r.stderr


@pytest.mark.parametrize(
    "case, phrase, code",
    [
        ("malicious", "refused to load global 'os.system'", 2),
        ("http", "only https:// URLs are allowed", 2),
        ("missing_root", "dataset folder not found", 2),
        ("bad_key", "unknown key 'val_datset'. Did you mean 'val_dataset'?", 2),
        ("bad_override", "unknown key 'itres'", 2),
        ("save_dir_under_file", "Not a directory", 1),
        ("small_image", "tiny.png: SSIM needs at least 11 x 11 pixels, got (10, 13)", 2),
    ],
)
def test_val_bad_inputs(tiny, tmp_path, monkeypatch, capsys, case, phrase, code):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    root.mkdir()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(root / "a.png")
    cfg = _val_cfg(tmp_path, root)
    w = str(tiny / "w.pdparams")
    args = ["-c", cfg, "--model_path", w, "--save_dir", str(tmp_path / "out")]
    if case == "malicious":
        args[3] = os.path.join(MALICIOUS, "os_system.pdparams")
    elif case == "http":
        args[3] = "http://example.com/w.pdparams"
    elif case == "missing_root":
        args[1] = _val_cfg(tmp_path, tmp_path / "nope")
    elif case == "bad_key":
        (tmp_path / "k.yml").write_text("val_datset: {type: X}\n")
        args[1] = str(tmp_path / "k.yml")
    elif case == "bad_override":
        args += ["-o", "itres=3"]
    elif case == "save_dir_under_file":
        (tmp_path / "file.txt").write_text("x")
        args[-1] = str(tmp_path / "file.txt" / "out")
    elif case == "small_image":
        Image.fromarray(np.full((10, 13, 3), 99, np.uint8)).save(root / "tiny.png")
    got, err = run_main("tools/val.py", *args, capsys=capsys)
    assert got == code, err
    errs = _error_lines(err)
    assert len(errs) == 1 and phrase in errs[0], err
    assert not (tmp_path / "pprestore_pwned_marker").exists()


# ---------------------------------------------------------------- tools/infer.py


def _infer_args(tiny, image_path, save_dir, *extra):
    return [
        "-c", str(tiny / "model.yml"), "--model_path", str(tiny / "w.pdparams"),
        "--image_path", str(image_path), "--save_dir", str(save_dir), "--quiet", *extra,
    ]  # fmt: skip


def test_infer_folder_of_bad_and_odd_images(tiny, bad_images_dir, make_bad_images, tmp_path):
    """Every good file is restored (same name, size, depth, alpha); every bad one is one
    FAILED line naming it; the summary names them; exit 1; no traceback."""
    from ppRestore.data.io import read_image
    from ppRestore.inference.batch import output_path

    out = tmp_path / "out"
    r = run_cli("tools/infer.py", *_infer_args(tiny, bad_images_dir, out), cwd=str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    cases = make_bad_images.CASES
    bad = sorted(n for n, (_, kind, _) in cases.items() if kind == "bad")
    good = sorted(n for n, (_, kind, _) in cases.items() if kind == "good")
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == len(bad), r.stderr
    for name in bad:
        (line,) = [ln for ln in failed if os.path.join(bad_images_dir, name) in ln]
        assert cases[name][2] in line, line
    assert f"{len(good)} restored, {len(bad)} failed" in r.stderr
    for name in good:
        src = read_image(os.path.join(bad_images_dir, name))
        res = read_image(output_path(name, str(out), src.data.dtype))
        assert res.data.shape == src.data.shape, name
        assert res.data.dtype == src.data.dtype, name
        assert (res.alpha is None) == (src.alpha is None), name
        if src.alpha is not None and os.path.splitext(name)[1].lower() == ".png":
            np.testing.assert_array_equal(res.alpha, src.alpha, err_msg=name)
    assert not any(n.startswith((".tmp-", ".write-test-")) for n in os.listdir(out))


@pytest.mark.parametrize("name", ["truncated.jpg", "empty.png", "not_an_image.png"])
def test_infer_single_bad_file(tiny, bad_images_dir, tmp_path, capsys, name):
    code, err = run_main(
        "tools/infer.py", *_infer_args(tiny, os.path.join(bad_images_dir, name), tmp_path / "o"),
        capsys=capsys,
    )  # fmt: skip
    assert code == 1
    errs = _error_lines(err)
    assert len(errs) == 1 and name in errs[0], err
    assert not os.path.exists(tmp_path / "o" / name)


def test_infer_single_bad_file_subprocess(tiny, bad_images_dir, tmp_path):
    r = run_cli(
        "tools/infer.py",
        *_infer_args(tiny, os.path.join(bad_images_dir, "truncated.png"), tmp_path / "o"),
        cwd=str(tmp_path),
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and "truncated.png: corrupt or truncated image" in errs[0], r.stderr


@pytest.mark.parametrize(
    "case, phrase",
    [
        ("missing_path", "no such file or folder"),
        ("empty_folder", "folder is empty"),
        ("save_dir_is_input", "is the input folder"),
        ("save_dir_under_file", "cannot write"),
        ("malicious_weights", "refused to load global 'os.system'"),
        ("pmrid_ckp", "refused to load global 'posix.system'"),
        ("http_weights", "only https:// URLs are allowed"),
        ("wrong_model_weights", "weights do not match DnCNN"),
        ("unknown_model", "unknown model type 'DnCNNN'. Did you mean 'DnCNN'"),
        ("bad_model_arg", "unknown argument 'feature' (did you mean 'features'?)"),
        ("bad_override", "unknown key 'modle'. Did you mean 'model'?"),
        ("missing_config", "config file not found"),
    ],
)
def test_infer_bad_setup_is_one_line(tiny, tmp_path, monkeypatch, capsys, case, phrase):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.full((12, 12, 3), 100, np.uint8)).save(imgs / "a.png")
    args = _infer_args(tiny, imgs, tmp_path / "out")
    i_cfg, i_w, i_img, i_out = 1, 3, 5, 7
    if case == "missing_path":
        args[i_img] = str(tmp_path / "nope")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args[i_img] = str(tmp_path / "empty")
    elif case == "save_dir_is_input":
        args[i_out] = str(imgs)
    elif case == "save_dir_under_file":
        (tmp_path / "file.txt").write_text("x")
        args[i_out] = str(tmp_path / "file.txt" / "out")
    elif case == "malicious_weights":
        args[i_w] = os.path.join(MALICIOUS, "os_system.pdparams")
    elif case == "pmrid_ckp":
        args[i_w] = os.path.join(MALICIOUS, "pmrid_evil.ckp")
    elif case == "http_weights":
        args[i_w] = "http://example.com/w.pdparams"
    elif case == "wrong_model_weights":
        from ppRestore.weights.safe_load import save_weights

        save_weights({"conv.weight": np.zeros((1, 1, 3, 3), np.float32)}, tmp_path / "x.pdparams")
        args[i_w] = str(tmp_path / "x.pdparams")
    elif case == "unknown_model":
        args += ["-o", "model.type=DnCNNN"]
    elif case == "bad_model_arg":
        args += ["-o", "model.feature=8"]
    elif case == "bad_override":
        args += ["-o", "modle.features=8"]
    elif case == "missing_config":
        args[i_cfg] = str(tmp_path / "none.yml")
    code, err = run_main("tools/infer.py", *args, capsys=capsys)
    assert code != 0, err
    errs = _error_lines(err)
    assert len(errs) == 1 and phrase in errs[0], err
    assert not (tmp_path / "pprestore_pwned_marker").exists()
    if case == "save_dir_is_input":
        assert sorted(os.listdir(imgs)) == ["a.png"]  # the input is untouched


# ---------------------------------------------------------------- deploy/python/infer.py


@pytest.fixture(scope="module")
def exported(tiny):
    out = tiny / "export"
    r = run_cli(
        "tools/export.py", "-c", str(tiny / "model.yml"), "--model_path",
        str(tiny / "w.pdparams"), "--save_dir", str(out), cwd=str(tiny),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def test_deploy_folder_of_bad_and_odd_images(exported, bad_images_dir, make_bad_images, tmp_path):
    r = run_cli(
        "deploy/python/infer.py", "--config", str(exported / "deploy.yaml"),
        "--image_path", bad_images_dir, "--save_dir", str(tmp_path / "out"), "--quiet",
        cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    cases = make_bad_images.CASES
    n_bad = sum(kind == "bad" for _, kind, _ in cases.values())
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("FAILED")]) == n_bad
    assert f"{len(cases) - n_bad} restored, {n_bad} failed" in r.stderr


@pytest.mark.parametrize(
    "case, phrase, want",
    [  # exit codes from ppRestore.errors: 2 a wrong input, 1 the engine refused the model
        ("missing", "not found; export a model", 2),
        ("bad_yaml", "not a valid deploy.yaml", 2),
        ("bad_params", "Cannot parse tensor desc", 2),  # Paddle raises ValueError here
        ("bad_json", "cannot load the model", 1),
    ],
)
def test_deploy_broken_export_is_one_line(exported, tmp_path, capsys, case, phrase, want):
    import shutil

    from PIL import Image

    d = tmp_path / "exp"
    shutil.copytree(exported, d)
    img = tmp_path / "a.png"
    Image.fromarray(np.full((12, 12, 3), 100, np.uint8)).save(img)
    cfg = str(d / "deploy.yaml")
    if case == "missing":
        cfg = str(tmp_path / "nope" / "deploy.yaml")
    elif case == "bad_yaml":
        (d / "deploy.yaml").write_text("pad_multiple: [1\n")
    elif case == "bad_params":
        (d / "model.pdiparams").write_bytes((d / "model.pdiparams").read_bytes()[:100])
    elif case == "bad_json":
        (d / "model.json").write_text("garbage")
    args = ["--config", cfg, "--image_path", str(img), "--save_dir", str(tmp_path / "o"), "--quiet"]
    code, err = run_main("deploy/python/infer.py", *args, capsys=capsys)
    assert code == want, err
    errs = _error_lines(err)
    assert len(errs) == 1 and phrase in errs[0], err
    assert len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------- tools/train.py


def _train_cfg(d, root) -> str:
    cfg = {
        "model": {"type": "DnCNN", "in_channels": 3, "num_layers": 3, "features": 4},
        "train_dataset": {
            "type": "SyntheticDataset",
            "dataset_root": str(root),
            "channels": 3,
            "degradations": [{"type": "GaussianNoise", "sigma": 25}],
            "transforms": [{"type": "PairedRandomCrop", "patch_size": 8}],
        },
        "loss": {"types": [{"type": "MSELoss"}], "coef": [1.0]},
        "optimizer": {"type": "Adam"},
        "lr_scheduler": {"type": "MultiStepDecay", "learning_rate": 1e-3, "milestones": [100]},
        "iters": 2,
        "batch_size": 2,
    }
    p = d / "train.yml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(p)


@pytest.mark.parametrize("workers", [0, 2])
def test_train_bad_image_in_training_set_fails_fast(bad_images_dir, tmp_path, workers):
    """Paddle's DataLoader reads in a helper thread even with num_workers=0; an exception
    there used to kill the thread and leave training waiting forever. With workers it
    printed the worker's traceback and ended in "SystemError: Blocking queue is killed".
    Now, either way: one line naming the file, exit code 2 like any other bad input."""
    r = run_cli(
        "tools/train.py", "-c", _train_cfg(tmp_path, bad_images_dir),
        "--save_dir", str(tmp_path / "run"), "--num_workers", str(workers),
        cwd=str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "SystemError" not in r.stderr, r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and bad_images_dir in errs[0], r.stderr


@pytest.mark.parametrize("case", ["malicious", "incomplete"])
def test_train_resume_from_bad_checkpoint(tmp_path, monkeypatch, capsys, case):
    import paddle  # noqa: F401 - a hard dependency: fail, not skip, when broken
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "set"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(root / f"{i}.png")
    cfg = _train_cfg(tmp_path, root)
    ck = tmp_path / "ck"
    ck.mkdir()
    with open(os.path.join(MALICIOUS, "os_system.pdparams"), "rb") as f:
        (ck / "model.pdparams").write_bytes(f.read())
    if case == "malicious":
        (ck / "COMPLETE").write_text('{"iteration": 1}')
        (ck / "train_state.json").write_text('{"iteration": 1}')
    args = ["-c", cfg, "--save_dir", str(tmp_path / "run"), "--resume_model", str(ck)]
    code, err = run_main("tools/train.py", *args, capsys=capsys)
    assert code != 0
    errs = _error_lines(err)
    phrase = "refused to load global 'os.system'" if case == "malicious" else "incomplete"
    assert len(errs) == 1 and phrase in errs[0], err
    assert not (tmp_path / "pprestore_pwned_marker").exists()


def test_val_scores_an_exported_model_like_its_weights(tiny, tmp_path, capsys):
    """tools/val.py --exported: the deployed graph (Paddle Inference, fp32 and bf16) is
    scored on the same seeded val set with the same protocol as the weights it came from."""
    import json

    import cv2

    from ppRestore.inference.export import export_model

    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(root / f"im{i}.png"), rng.integers(0, 256, (40, 44, 3), dtype=np.uint8))
    cfg = _val_cfg(tmp_path, root)
    export_model(cfg, str(tiny / "w.pdparams"), str(tmp_path / "exp"), log=lambda m: None)
    scores = {}
    for name, extra in {
        "weights": ["--model_path", str(tiny / "w.pdparams")],
        "fp32": ["--exported", str(tmp_path / "exp")],
        "bf16": ["--exported", str(tmp_path / "exp"), "--precision", "bf16"],
    }.items():
        out = tmp_path / f"val_{name}"
        code, err = run_main(
            "tools/val.py", "-c", cfg, *extra, "--save_dir", str(out), capsys=capsys
        )
        assert code == 0, err
        scores[name] = json.load(open(out / "summary.json"))
    assert scores["fp32"]["precision"] == "fp32" and "model_path" not in scores["fp32"]
    assert abs(scores["fp32"]["psnr"] - scores["weights"]["psnr"]) < 1e-3
    assert abs(scores["bf16"]["psnr"] - scores["weights"]["psnr"]) < 0.5
    # --model_path and --exported are exclusive, one is required
    with pytest.raises(SystemExit):
        run_main("tools/val.py", "-c", cfg, capsys=capsys)


def test_worker_errors_travel_as_json_and_keep_their_class():
    """What a DataLoader worker sends for a failing sample: the nearest rebuildable class
    and the message, never a pickle."""
    from ppRestore.data.datasets import _error_payload, _rebuild_error
    from ppRestore.data.io import ImageReadError

    class MyDataError(ValueError):  # e.g. a RawError: becomes its ValueError base
        pass

    e = _rebuild_error(_error_payload(ImageReadError("x.png: corrupt")))
    assert type(e) is ImageReadError and str(e) == "x.png: corrupt"
    e = _rebuild_error(_error_payload(MyDataError("bad frame")))
    assert type(e) is ValueError and str(e) == "bad frame"
    # a built-in class that cannot be rebuilt from a message alone
    e = _rebuild_error(_error_payload(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")))
    assert type(e) is RuntimeError and str(e).startswith("UnicodeDecodeError: ")
    assert _error_payload(OSError("disk")).dtype == np.uint8
