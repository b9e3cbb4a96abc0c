"""Model zoo names, weights shipped in the repo, and the https download cache.

``--model_path`` accepts three things, resolved here:

* a local file (``.pdparams`` or ``.safetensors``);
* an ``https://`` URL, downloaded once into the cache (``$PPRESTORE_HOME``, default
  ``~/.cache/ppRestore``) with a size cap, written through the one atomic writer
  (:func:`ppRestore.files.atomic_write`: a temporary file renamed only when
  complete), and checked against a SHA-256 when the zoo knows one;
* a zoo name from :data:`ZOO` (shipped files first, then their URL, or a mirror); the
  table itself is :mod:`ppRestore.weights.zoo_entries`.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, Dict

from ..files import atomic_write
from ..resources import data_dir
from .safe_load import WeightsError
from .zoo_entries import ZOO

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRETRAINED_DIR = data_dir("pretrained")  # the checkout's pretrained/, or the wheel's copy
MAX_DOWNLOAD_BYTES = 1 << 30  # 1 GiB: far above any model here; stops a runaway download.
# Overall time limit of one download (seconds; env PPRESTORE_DOWNLOAD_DEADLINE overrides).
# The socket timeout is per read, so a server trickling one byte every few seconds would
# otherwise hold a run forever; 1800 s still lets 1 GiB arrive at 0.6 MB/s.
DOWNLOAD_DEADLINE_S = 1800.0

#: Environment variables naming a mirror for zoo downloads (first set wins); see
#: :func:`mirrored_url`. The config key is ``model.weights_mirror``.
MIRROR_ENV = ("PPRESTORE_MIRROR", "PPRESTORE_WEIGHTS_MIRROR")


def mirror_setting(mirror: str | None = None) -> str | None:
    """The mirror to use: ``mirror`` (config), else the first set :data:`MIRROR_ENV`."""
    if mirror:
        return str(mirror)
    for var in MIRROR_ENV:
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    return None


def mirrored_url(url: str, name: str, mirror: str | None) -> str:
    """Where to fetch zoo entry ``name`` (official ``url``) through ``mirror``.

    * ``mirror`` with ``{url}``, ``{name}``, ``{file}`` or ``{path}`` placeholders is
      formatted (``https://ghproxy.example/{url}``, ``https://my.host/w/{name}/{file}``);
    * a plain ``https://`` base gets the URL's path appended (the host is replaced);
    * a local folder is searched for ``<name>/<file>``, then ``<file>`` (copy the
      files there by hand on a machine that cannot reach GitHub).
    """
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    file = os.path.basename(parts.path)
    if "{" in mirror:
        return mirror.format(url=url, name=name, file=file, path=parts.path.lstrip("/"))
    if "://" not in mirror:
        for cand in (os.path.join(mirror, name, file), os.path.join(mirror, file)):
            if os.path.isfile(cand):
                return cand
        raise WeightsError(
            f"zoo model '{name}': the mirror folder {mirror} has neither {name}/{file} nor "
            f"{file} (official URL: {url})"
        )
    return mirror.rstrip("/") + parts.path


def cache_dir() -> str:
    return os.environ.get(
        "PPRESTORE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "ppRestore")
    )


_cache_root = cache_dir  # resolve_weights' ``cache_dir`` argument shadows the function


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _display(url: str) -> str:
    """``url`` without credentials or query (signed tokens), for messages."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


def _cache_name(url: str) -> str:
    """A safe file name for ``url``'s last path segment (never '', '.', '..' or a path)."""
    raw = urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(url).path))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:128]
    return name if name.strip(".") else "weights.pdparams"


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https: urllib would otherwise follow https -> http/ftp."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        scheme = urllib.parse.urlsplit(newurl).scheme
        if scheme != "https":
            raise WeightsError(
                f"refusing to download {_display(req.full_url)}: the server redirects to "
                f"'{scheme}', and only https:// is allowed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, timeout: float, context: ssl.SSLContext | None = None):
    """Open ``url`` (https only, redirects included); tests replace this."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context or ssl.create_default_context()),
        _HttpsOnlyRedirects(),
    )
    return opener.open(url, timeout=timeout)


def download(
    url: str,
    dst_dir: str | None = None,
    sha256: str | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    deadline: float | None = None,
) -> str:
    """Download ``url`` into the cache once and return the local path.

    Only ``https://`` is accepted (redirects too). The body is streamed through
    :func:`ppRestore.files.atomic_write` into a temporary file in the cache folder,
    capped at ``max_bytes`` (by ``Content-Length`` and by the bytes actually received),
    checked against ``sha256`` (argument, or a ``#sha256=<hex>`` URL fragment) and
    renamed into place only when complete, so an interrupted or bad download never
    leaves a file behind. Each URL gets its own cache folder (two URLs ending in
    ``model.pdparams`` do not collide). ``timeout`` bounds each network read,
    ``deadline`` (default :data:`DOWNLOAD_DEADLINE_S` or the
    ``PPRESTORE_DOWNLOAD_DEADLINE`` variable) the whole transfer; it is checked after
    every received chunk, so it can be overshot by at most one ``timeout``.

    Raises:
        WeightsError: one line naming the URL and the problem (offline, HTTP error,
            too large, incomplete, checksum mismatch, not https).
    """
    shown = _display(url)
    sha256 = _check_url(url, sha256)
    if deadline is None:
        deadline = _download_deadline()
    dst_dir = os.path.join(dst_dir or cache_dir(), _url_key(url))
    dst = os.path.join(dst_dir, _cache_name(url))
    if os.path.isfile(dst) and (sha256 is None or sha256_of(dst) == sha256):
        return dst

    def check(tmp: str) -> None:  # before the rename: a bad file is discarded
        got = sha256_of(tmp)
        if got != sha256:
            raise WeightsError(
                f"{shown}: checksum mismatch (expected {sha256}, got {got}); file discarded"
            )

    def fetch(f: BinaryIO) -> None:
        _fetch_into(f, url, max_bytes, timeout, context, deadline)

    try:
        # every network failure is already a WeightsError: an OSError here is the cache
        atomic_write(dst, fetch, prefix=".download-", check=check if sha256 else None)
    except OSError as e:
        raise WeightsError(
            f"cannot write to the download cache {dst_dir} ({e.strerror or e}); set "
            "PPRESTORE_HOME to a writable folder"
        ) from None
    return dst


def _check_url(url: str, sha256: str | None) -> str | None:
    """Refuse anything but an ``https://`` URL with a host; the expected checksum
    (``sha256``, else the URL's ``#sha256=`` fragment; they must agree), lower-case."""
    parsed = urllib.parse.urlsplit(url)
    shown = _display(url)
    if parsed.scheme != "https":
        hint = " (for a local file pass its path instead)" if parsed.scheme == "file" else ""
        raise WeightsError(
            f"refusing to download over '{parsed.scheme or '?'}': only https:// URLs are "
            f"allowed ({shown}){hint}"
        )
    if not parsed.hostname:
        raise WeightsError(f"not a valid URL (no host): {shown}")
    m = re.search(r"(?:^|&)sha256=([0-9a-fA-F]{64})(?:&|$)", parsed.fragment)
    if m and sha256 and m.group(1).lower() != sha256.lower():
        raise WeightsError(f"{shown}: the URL's #sha256= and the known checksum disagree")
    return (sha256 or (m.group(1) if m else None) or "").lower() or None


def _download_deadline() -> float:
    """:data:`DOWNLOAD_DEADLINE_S`, or ``PPRESTORE_DOWNLOAD_DEADLINE`` when it is a number."""
    try:
        return float(os.environ.get("PPRESTORE_DOWNLOAD_DEADLINE", DOWNLOAD_DEADLINE_S))
    except ValueError:
        return DOWNLOAD_DEADLINE_S


def _url_key(url: str) -> str:
    """The cache sub-folder of ``url`` (its hash without the fragment)."""
    return hashlib.sha256(urllib.parse.urldefrag(url)[0].encode("utf-8")).hexdigest()[:16]


def _fetch_into(
    f: BinaryIO,
    url: str,
    max_bytes: int,
    timeout: float,
    context: ssl.SSLContext | None,
    deadline: float,
) -> None:
    """Stream ``url``'s body into ``f`` (:func:`_copy_capped`); every network failure
    becomes a one-line WeightsError."""
    shown = _display(url)
    t_end = time.monotonic() + deadline
    try:
        with _open(url, min(timeout, deadline), context) as r:
            _copy_capped(r, f, shown, max_bytes, deadline, t_end)
    except urllib.error.HTTPError as e:
        e.close()
        raise WeightsError(
            f"cannot download {shown}: the server answered HTTP {e.code} {e.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, ssl.SSLError):
            raise WeightsError(
                f"cannot download {shown}: TLS/certificate error ({reason})"
            ) from None
        raise WeightsError(
            f"cannot download {shown} ({reason}); are you offline? Download it by hand "
            "and pass the local file to --model_path"
        ) from None
    except http.client.HTTPException as e:  # IncompleteRead, BadStatusLine, ...
        raise WeightsError(
            f"cannot download {shown}: connection broke off ({type(e).__name__}); try again"
        ) from None


def _copy_capped(
    r: Any, f: BinaryIO, shown: str, max_bytes: int, deadline: float, t_end: float
) -> None:
    """Copy response ``r`` into ``f``: at most ``max_bytes`` (declared and received),
    finished by ``t_end`` (``time.monotonic()``), exactly ``Content-Length`` bytes."""
    length = r.headers.get("Content-Length")
    try:
        length = int(length) if length is not None else None
    except ValueError:
        length = None  # a garbled header: rely on the streamed count
    if length is not None and length > max_bytes:
        raise WeightsError(f"{shown}: {length} bytes exceeds the {max_bytes}-byte download cap")
    total = 0
    # read1 returns whatever arrived (a slow server cannot hold one call for long); fake
    # responses in tests may only have read
    read = getattr(r, "read1", None) or r.read
    for chunk in iter(lambda: read(1 << 20), b""):
        if time.monotonic() > t_end:
            raise WeightsError(
                f"cannot download {shown}: not finished after {deadline:g} s "
                f"({total} bytes so far); set PPRESTORE_DOWNLOAD_DEADLINE "
                "to allow longer, or download it by hand"
            )
        total += len(chunk)
        if total > max_bytes:
            raise WeightsError(f"{shown}: download exceeds the {max_bytes}-byte cap")
        f.write(chunk)
    if length is not None and total != length:
        raise WeightsError(f"{shown}: download incomplete ({total} of {length} bytes); try again")


def resolve_weights(spec: str, cache_dir: str | None = None, mirror: str | None = None) -> str:
    """Turn a ``--model_path`` value into a local file path (see module docstring).

    A zoo name with a ``url`` downloads through ``mirror`` (or ``$PPRESTORE_MIRROR``)
    when one is set. The file may be a foreign checkpoint (the official ``.pth``):
    :func:`ppRestore.weights.foreign.load_weights_into` converts it for the model.
    """
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
            return _download_zoo_entry(spec, entry, cache_dir, mirror)
        raise WeightsError(f"zoo model '{spec}' has no shipped file and no URL")
    if os.path.isdir(spec):
        for cand in ("model.pdparams", "model.safetensors"):
            if os.path.isfile(os.path.join(spec, cand)):
                return os.path.join(spec, cand)
        raise WeightsError(f"{spec} is a folder without model.pdparams")
    known = ", ".join(sorted(ZOO)) or "none yet"
    close = difflib.get_close_matches(spec, list(ZOO), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise WeightsError(
        f"weights not found: '{spec}' is not a file, an https URL or a zoo name{hint} "
        f"(zoo names: {known})"
    )


def _download_zoo_entry(
    name: str, entry: Dict[str, str], cache_dir: str | None, mirror: str | None
) -> str:
    """The local copy of zoo entry ``name``'s ``url``: from a local mirror folder, or
    downloaded (through ``mirror`` or ``$PPRESTORE_MIRROR`` when set) into the cache."""
    mirror = mirror_setting(mirror)
    url = mirrored_url(entry["url"], name, mirror)
    if "://" not in url:  # found in a local mirror folder
        return url
    # On a terminal, say what the wait is for; the line is erased if the download
    # fails (the error stays one line) and ends in "done" otherwise.
    cached = os.path.join(cache_dir or _cache_root(), _url_key(url), _cache_name(url))
    tty = not os.path.isfile(cached) and sys.stderr.isatty()
    if tty:
        size = f" (~{entry['size_mb']} MB)" if entry.get("size_mb") else ""
        print(
            f"downloading zoo model '{name}'{size} from {_display(url)} once ...",
            end="",
            file=sys.stderr,
            flush=True,
        )
    try:
        path = download(url, dst_dir=cache_dir, sha256=entry.get("sha256"))
    except WeightsError as e:
        if tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        if "download" not in str(e) or mirror:
            raise
        raise WeightsError(
            f"zoo model '{name}': {e} (or set PPRESTORE_MIRROR to a mirror)"
        ) from None
    if tty:
        print(" done", file=sys.stderr, flush=True)
    return path
