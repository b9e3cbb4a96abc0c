"""README_CN.md says the same commands as README.md; every relative link in both READMEs
and in docs/zh/ resolves; the README pictures are reproducible and small."""

from __future__ import annotations

import glob
import importlib.util
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "README_CN.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "zh", "*.md"))
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def read(rel: str) -> str:
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def first_bash_commands(text: str) -> list:
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_cn_quick_start_commands_equal_readme():
    en = first_bash_commands(read("README.md"))
    cn = first_bash_commands(read("README_CN.md"))
    assert len(en) == 2 and cn == en


def test_docs_zh_has_the_promised_pages():
    names = {os.path.basename(p) for p in DOCS if p.startswith("docs")}
    assert {"getting_started.md", "model_zoo.md", "training.md", "deploy.md", "webui.md"} <= names


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    base = os.path.dirname(os.path.join(REPO, doc))
    targets = [t for t in LINK.findall(read(doc)) if not re.match(r"[a-z]+:", t)]
    assert targets, f"{doc} has no relative links to check"
    missing = [
        t
        for t in targets
        if t.split("#")[0] and not os.path.exists(os.path.join(base, t.split("#")[0]))
    ]
    assert not missing, f"{doc}: broken links {missing}"


def test_readme_pictures_are_reproducible_and_small(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_readme_images", os.path.join(REPO, "tools", "make_readme_images.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from ppRestore.data.io import read_image

    for path, shape in ((mod.make_denoise(str(tmp_path)), (170, 444, 3)),
                        (mod.make_sr(str(tmp_path)), (180, 728, 3))):  # fmt: skip
        assert read_image(path).data.shape == shape
        assert os.path.getsize(path) < 300 * 1024
        committed = os.path.join(REPO, "docs", "images", os.path.basename(path))
        assert os.path.getsize(committed) < 300 * 1024
        # the committed picture is what the script makes (same models, same crops)
        assert (read_image(committed).data.astype(int) - read_image(path).data).__abs__().max() <= 1
    assert os.path.getsize(os.path.join(REPO, "docs", "images", "webui.png")) < 300 * 1024
