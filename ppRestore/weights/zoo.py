"""Model zoo names, weights shipped in the repo, and the https download cache.

``--model_path`` accepts three things, resolved here:

* a local file (``.pdparams`` or ``.safetensors``);
* an ``https://`` URL, downloaded once into the cache (``$PPRESTORE_HOME``, default
  ``~/.cache/ppRestore``) with a size cap, written to a temporary file and renamed
  only when complete, and checked against a SHA-256 when the zoo knows one;
* a zoo name from :data:`ZOO` (shipped files first, then their URL).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional

from .safe_load import WeightsError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRETRAINED_DIR = os.path.join(REPO_ROOT, "pretrained")
MAX_DOWNLOAD_BYTES = 1 << 30  # 1 GiB: far above any model here; stops a runaway download.

# name -> {"file": path relative to pretrained/, "url": https URL, "sha256": hex,
#          "config": configs/... path, "arch": converter arch}. Filled as weights land.
ZOO: Dict[str, Dict[str, str]] = {
    # Trained with tools/train.py on a 2-core CPU; commands and numbers: pretrained/README.md.
    "demo_color_denoise": {
        "file": "unet_color_denoise_s25.pdparams",
        "config": "configs/demo.yml",
        "sha256": "4ad169aa67dc66df514bbf52b75bed7ad40393634c72c9015a682059fc76beba",
    },
    "srcnn_x3": {
        "file": "srcnn_x3_y.pdparams",
        "config": "configs/srcnn/srcnn_x3.yml",
        "sha256": "ced613dc21c83034ec9d4b4392c263012456bb8a3fc409d4d9f53a624ac71264",
    },
    "srcnn_ps_x3": {
        "file": "srcnn_ps_x3_y.pdparams",
        "config": "configs/srcnn/srcnn_ps_x3.yml",
        "sha256": "63267e41d80688199549ef33c6752246f28f1550cb62b6074efddd4e08521b5d",
    },
    "srcnn_x2": {
        "file": "srcnn_x2_y.pdparams",
        "config": "configs/srcnn/srcnn_x2.yml",
        "sha256": "333fa471987073ccb5e2081474b93a346ed491a5dfed67cdb529d0986cb94c23",
    },
}


def cache_dir() -> str:
    return os.environ.get("PPRESTORE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "ppRestore"))


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dst_dir: Optional[str] = None, sha256: Optional[str] = None,
             max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = 30.0) -> str:
    """Download ``url`` into the cache once and return the local path."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "https":
        raise WeightsError(f"refusing to download over '{parsed.scheme}': only https:// URLs are allowed ({url})")
    name = os.path.basename(parsed.path) or "weights.pdparams"
    dst_dir = dst_dir or cache_dir()
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, name)
    if os.path.isfile(dst) and (sha256 is None or sha256_of(dst) == sha256):
        return dst
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dst_dir)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
                length = r.headers.get("Content-Length")
                if length is not None and int(length) > max_bytes:
                    raise WeightsError(f"{url}: {int(length)} bytes exceeds the {max_bytes}-byte cap")
                total = 0
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    total += len(chunk)
                    if total > max_bytes:
                        raise WeightsError(f"{url}: download exceeds the {max_bytes}-byte cap")
                    f.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise WeightsError(
                f"cannot download {url} ({reason}); are you offline? Download it by hand and "
                "pass the local file to --model_path"
            ) from None
        if sha256 is not None:
            got = sha256_of(tmp)
            if got != sha256:
                raise WeightsError(f"{url}: checksum mismatch (expected {sha256}, got {got}); file discarded")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dst


def resolve_weights(spec: str, cache_dir: Optional[str] = None) -> str:
    """Turn a ``--model_path`` value into a local file path (see module docstring)."""
    if spec is None or str(spec).strip() == "":
        raise WeightsError("no weights given: pass --model_path FILE, URL or zoo name")
    spec = os.fspath(spec)
    if "://" in spec:
        return download(spec, dst_dir=cache_dir)
    if os.path.isfile(spec):
        return spec
    if spec in ZOO:
        entry = ZOO[spec]
        if entry.get("file"):
            local = os.path.join(PRETRAINED_DIR, entry["file"])
            if os.path.isfile(local):
                return local
        if entry.get("url"):
            return download(entry["url"], dst_dir=cache_dir, sha256=entry.get("sha256"))
        raise WeightsError(f"zoo model '{spec}' has no shipped file and no URL")
    if os.path.isdir(spec):
        for cand in ("model.pdparams", "model.safetensors"):
            if os.path.isfile(os.path.join(spec, cand)):
                return os.path.join(spec, cand)
        raise WeightsError(f"{spec} is a folder without model.pdparams")
    known = ", ".join(sorted(ZOO)) or "(none yet)"
    raise WeightsError(f"weights not found: '{spec}' is not a file, an https URL or a zoo name (known: {known})")
