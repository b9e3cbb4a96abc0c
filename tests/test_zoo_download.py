"""``--model_path URL``: https only, size cap, checksum, atomic cache, clear offline errors.

Most tests talk to a real HTTPS server on 127.0.0.1 with a self-signed certificate made
at test time by the ``openssl`` CLI (or the ``cryptography`` package); the failure modes
a server cannot easily produce (DNS failure, a reset mid-stream, Ctrl-C) use a fake
response in place of :func:`ppRestore.weights.zoo._open`.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error

import numpy as np
import pytest

from ppRestore.weights import zoo
from ppRestore.weights.safe_load import WeightsError, load_weights
from ppRestore.weights.zoo import download, resolve_weights

STATE = {"conv.weight": np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)}
BODY = pickle.dumps(STATE, protocol=4)
BODY_SHA = hashlib.sha256(BODY).hexdigest()


# ---------------------------------------------------------------- local HTTPS server


def _make_cert(d) -> tuple:
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    if shutil.which("openssl"):
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],  # fmt: skip
            check=True,
            capture_output=True,
        )
        return cert, key
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("needs the openssl CLI or the cryptography package to make a test certificate")
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(k, hashes.SHA256())
    )
    with open(cert, "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as f:
        f.write(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    return cert, key


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        _Handler.hits[path] = _Handler.hits.get(path, 0) + 1
        port = self.server.server_address[1]
        if path.endswith("/model.pdparams") or path.endswith("/other.pdparams"):
            self._send(200, BODY, [("Content-Length", str(len(BODY)))])
        elif path == "/big.pdparams":  # honest Content-Length over the cap
            self._send(200, b"x" * 5000, [("Content-Length", "5000")])
        elif path == "/stream_big.pdparams":  # no Content-Length: only the stream tells
            self.close_connection = True
            self._send(200, b"y" * 5000, [("Connection", "close")])
        elif path == "/short.pdparams":  # promises 4000 bytes, sends 500, hangs up
            self.close_connection = True
            self._send(200, b"z" * 500, [("Content-Length", "4000")])
        elif path == "/garbled.pdparams":
            self.close_connection = True
            self._send(200, BODY, [("Content-Length", "lots"), ("Connection", "close")])
        elif path == "/slow.pdparams":  # one byte every 0.3 s: never hits a per-read timeout
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"s")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:  # the client gave up
                pass
        elif path == "/to_http.pdparams":
            self._send(302, headers=[("Location", f"http://127.0.0.1:{port}/a/model.pdparams")])
        elif path == "/to_https.pdparams":
            self._send(302, headers=[("Location", f"https://127.0.0.1:{port}/b/model.pdparams")])
        elif path == "/to_ftp.pdparams":
            self._send(302, headers=[("Location", "ftp://127.0.0.1/model.pdparams")])
        else:
            self._send(404, b"not here", [("Content-Length", "8")])


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = _make_cert(d)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"https://127.0.0.1:{srv.server_address[1]}"
    yield base, cert
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def client(https_server, monkeypatch, tmp_path):
    """(base URL, SSL context trusting the test cert, cache dir); no proxies."""
    base, cert = https_server
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _Handler.hits.clear()
    return base, ssl.create_default_context(cafile=cert), str(tmp_path / "cache")


def _files(d):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.relpath(os.path.join(root, f), d) for f in files]
    return sorted(out)


def test_success_then_cache_hit(client):
    base, ctx, cache = client
    url = f"{base}/v1/model.pdparams"
    p1 = download(url, dst_dir=cache, context=ctx)
    assert open(p1, "rb").read() == BODY
    assert os.path.basename(p1) == "model.pdparams"
    p2 = download(url, dst_dir=cache, context=ctx)
    assert p2 == p1
    assert _Handler.hits["/v1/model.pdparams"] == 1  # no second download
    np.testing.assert_array_equal(load_weights(p1)["conv.weight"], STATE["conv.weight"])
    assert not [f for f in _files(cache) if ".download-" in f]


def test_same_file_name_from_two_urls_does_not_collide(client):
    base, ctx, cache = client
    p1 = download(f"{base}/x/model.pdparams", dst_dir=cache, context=ctx)
    p2 = download(f"{base}/y/model.pdparams", dst_dir=cache, context=ctx)
    assert p1 != p2
    assert _Handler.hits["/x/model.pdparams"] == _Handler.hits["/y/model.pdparams"] == 1


def test_checksum_verified(client):
    base, ctx, cache = client
    p = download(f"{base}/ok/model.pdparams", dst_dir=cache, sha256=BODY_SHA, context=ctx)
    assert zoo.sha256_of(p) == BODY_SHA
    # via a #sha256= fragment, as --model_path accepts it
    p = download(f"{base}/frag/model.pdparams#sha256={BODY_SHA}", dst_dir=cache, context=ctx)
    assert zoo.sha256_of(p) == BODY_SHA


@pytest.mark.parametrize("how", ["argument", "fragment"])
def test_checksum_mismatch_leaves_nothing(client, how):
    base, ctx, cache = client
    wrong = "0" * 64
    url = f"{base}/bad/model.pdparams"
    kw = {"sha256": wrong}
    if how == "fragment":
        url, kw = f"{url}#sha256={wrong}", {}
    with pytest.raises(WeightsError, match="checksum mismatch") as ei:
        download(url, dst_dir=cache, context=ctx, **kw)
    assert wrong in str(ei.value) and BODY_SHA in str(ei.value)
    assert _files(cache) == []


def test_cached_file_with_wrong_checksum_is_downloaded_again(client):
    base, ctx, cache = client
    url = f"{base}/re/model.pdparams"
    p = download(url, dst_dir=cache, context=ctx)
    with open(p, "wb") as f:
        f.write(b"tampered")
    p2 = download(url, dst_dir=cache, sha256=BODY_SHA, context=ctx)
    assert open(p2, "rb").read() == BODY
    assert _Handler.hits["/re/model.pdparams"] == 2


def test_size_cap_by_content_length(client):
    base, ctx, cache = client
    with pytest.raises(WeightsError, match="5000 bytes exceeds the 1000-byte download cap"):
        download(f"{base}/big.pdparams", dst_dir=cache, max_bytes=1000, context=ctx)
    assert _files(cache) == []


def test_size_cap_by_streamed_bytes(client):
    base, ctx, cache = client
    with pytest.raises(WeightsError, match="exceeds the 1000-byte cap"):
        download(f"{base}/stream_big.pdparams", dst_dir=cache, max_bytes=1000, context=ctx)
    assert _files(cache) == []


def test_interrupted_download_leaves_no_file(client):
    base, ctx, cache = client
    with pytest.raises(WeightsError, match="incomplete|broke off") as ei:
        download(f"{base}/short.pdparams", dst_dir=cache, context=ctx)
    assert "\n" not in str(ei.value)
    assert _files(cache) == []


def test_slow_server_hits_the_overall_deadline(client, monkeypatch):
    base, ctx, cache = client
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=r"not finished after 1\.5 s") as ei:
        download(f"{base}/slow.pdparams", dst_dir=cache, context=ctx, deadline=1.5)
    assert time.monotonic() - t0 < 6  # the per-read timeout (30 s) never fired
    assert "\n" not in str(ei.value)
    assert _files(cache) == []  # the temporary file is gone
    # the environment variable sets the default deadline
    monkeypatch.setenv("PPRESTORE_DOWNLOAD_DEADLINE", "1")
    with pytest.raises(WeightsError, match=r"not finished after 1 s"):
        download(f"{base}/slow.pdparams", dst_dir=cache, context=ctx)
    assert _files(cache) == []


def test_garbled_content_length_still_downloads(client):
    base, ctx, cache = client
    p = download(f"{base}/garbled.pdparams", dst_dir=cache, context=ctx)
    assert open(p, "rb").read() == BODY


def test_http_error_is_reported(client):
    base, ctx, cache = client
    with pytest.raises(WeightsError, match="HTTP 404"):
        download(f"{base}/missing.pdparams", dst_dir=cache, context=ctx)
    assert _files(cache) == []


@pytest.mark.parametrize("route, scheme", [("to_http", "http"), ("to_ftp", "ftp")])
def test_redirect_to_insecure_scheme_is_refused(client, route, scheme):
    base, ctx, cache = client
    with pytest.raises(WeightsError, match=f"redirects to '{scheme}'"):
        download(f"{base}/{route}.pdparams", dst_dir=cache, context=ctx)
    assert "/a/model.pdparams" not in _Handler.hits
    assert _files(cache) == []


def test_redirect_to_https_is_followed(client):
    base, ctx, cache = client
    p = download(f"{base}/to_https.pdparams", dst_dir=cache, context=ctx)
    assert open(p, "rb").read() == BODY


def test_untrusted_certificate_is_refused(client):
    """Verification is on: the self-signed test certificate is not trusted by default."""
    base, _, cache = client
    with pytest.raises(WeightsError, match="certificate|TLS"):
        download(f"{base}/ok/model.pdparams", dst_dir=cache, context=ssl.create_default_context())
    assert _files(cache) == []


def test_model_path_url_end_to_end(client, https_server, monkeypatch, tmp_path):
    """resolve_weights (the --model_path route) with the CA given the standard way."""
    base, _, _ = client
    monkeypatch.setenv("SSL_CERT_FILE", https_server[1])
    monkeypatch.setenv("PPRESTORE_HOME", str(tmp_path / "home"))
    p = resolve_weights(f"{base}/e2e/model.pdparams")
    assert p.startswith(str(tmp_path / "home"))
    assert resolve_weights(f"{base}/e2e/model.pdparams") == p
    assert _Handler.hits["/e2e/model.pdparams"] == 1


def test_connection_refused_is_one_offline_line(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(WeightsError) as ei:
        download(f"https://127.0.0.1:{port}/model.pdparams", dst_dir=str(tmp_path), timeout=5)
    msg = str(ei.value)
    assert "offline" in msg and "--model_path" in msg and "\n" not in msg
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- refused schemes and names


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("http://example.com/model.pdparams", "http"),
        ("ftp://example.com/model.pdparams", "ftp"),
        ("file:///etc/passwd", "file"),
        ("HTTP://example.com/model.pdparams", "http"),
    ],
)
def test_non_https_refused_before_any_network(tmp_path, monkeypatch, url, scheme):
    monkeypatch.setattr(zoo, "_open", lambda *a, **k: pytest.fail("network touched"))
    with pytest.raises(WeightsError, match=f"refusing to download over '{scheme}'") as ei:
        resolve_weights(url, cache_dir=str(tmp_path))
    assert "only https://" in str(ei.value)
    assert _files(tmp_path) == []
    with pytest.raises(WeightsError, match=f"refusing to download over '{scheme}'"):
        download(url, dst_dir=str(tmp_path))


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://h/a/model.pdparams", "model.pdparams"),
        ("https://h/a/..", "weights.pdparams"),
        ("https://h/", "weights.pdparams"),
        ("https://h/a/%2e%2e", "weights.pdparams"),
        ("https://h/a/..%2F..%2Fetc%2Fpasswd", ".._.._etc_passwd"),
        ("https://h/a/m%20v1.safetensors?x=1", "m_v1.safetensors"),
    ],
)
def test_cache_file_names_are_safe(url, name):
    assert zoo._cache_name(url) == name


def test_credentials_and_query_not_echoed(tmp_path):
    with pytest.raises(WeightsError) as ei:
        download("http://user:secret@h.example/m.pdparams?token=abc", dst_dir=str(tmp_path))
    assert "secret" not in str(ei.value) and "token" not in str(ei.value)


# ---------------------------------------------------------------- faults via a fake response


class _FakeResponse:
    def __init__(self, chunks, length=None, fail_after=None):
        self.headers = {} if length is None else {"Content-Length": str(length)}
        self._chunks, self._fail_after, self._n = list(chunks), fail_after, 0

    def read(self, n=-1):
        if self._fail_after is not None and self._n >= self._fail_after:
            raise self._fail_after_exc
        self._n += 1
        return self._chunks.pop(0) if self._chunks else b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize(
    "exc",
    [
        urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")),
        urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        TimeoutError("timed out"),
        OSError(101, "Network is unreachable"),
    ],
)
def test_offline_is_one_clear_line(tmp_path, monkeypatch, exc):
    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(zoo, "_open", fail)
    with pytest.raises(WeightsError) as ei:
        resolve_weights("https://example.com/model.pdparams", cache_dir=str(tmp_path))
    msg = str(ei.value)
    assert msg.startswith("cannot download https://example.com/model.pdparams")
    assert "offline" in msg and "\n" not in msg
    assert _files(tmp_path) == []


@pytest.mark.parametrize("exc", [ConnectionResetError(104, "reset"), KeyboardInterrupt()])
def test_failure_mid_stream_leaves_no_file(tmp_path, monkeypatch, exc):
    resp = _FakeResponse([b"a" * 100, b"b" * 100], length=1000, fail_after=1)
    resp._fail_after_exc = exc
    monkeypatch.setattr(zoo, "_open", lambda *a, **k: resp)
    with pytest.raises((WeightsError, KeyboardInterrupt)):
        download("https://example.com/m.pdparams", dst_dir=str(tmp_path))
    assert _files(tmp_path) == []


def test_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(WeightsError, match="PPRESTORE_HOME"):
        download("https://example.com/m.pdparams", dst_dir=str(blocker / "cache"))


def test_fake_response_success_uses_atomic_rename(tmp_path, monkeypatch):
    seen = {}
    real_replace = os.replace

    def spy(src, dst):
        seen["src"], seen["dst"] = src, dst
        return real_replace(src, dst)

    monkeypatch.setattr(zoo, "_open", lambda *a, **k: _FakeResponse([BODY], length=len(BODY)))
    monkeypatch.setattr(zoo.os, "replace", spy)
    p = download("https://example.com/m.pdparams", dst_dir=str(tmp_path))
    assert seen["dst"] == p and ".download-" in os.path.basename(seen["src"])
    assert open(p, "rb").read() == BODY


# ---------------------------------------------------------------- other --model_path forms


def test_local_file_folder_and_unknown_name(tmp_path, monkeypatch):
    f = tmp_path / "w.pdparams"
    f.write_bytes(BODY)
    assert resolve_weights(str(f)) == str(f)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pdparams").write_bytes(BODY)
    assert resolve_weights(str(tmp_path / "run")) == str(tmp_path / "run" / "model.pdparams")
    with pytest.raises(WeightsError, match="folder without model.pdparams"):
        resolve_weights(str(tmp_path))
    monkeypatch.setitem(zoo.ZOO, "dncnn_sigma25", {"url": "https://example.com/d.pdparams"})
    with pytest.raises(WeightsError, match="did you mean 'dncnn_sigma25'"):
        resolve_weights("dncnn_sigma52")
    for empty in ("", "  ", None):
        with pytest.raises(WeightsError, match="no weights given"):
            resolve_weights(empty)


def test_zoo_entry_with_url_checks_its_sha(tmp_path, monkeypatch):
    monkeypatch.setitem(
        zoo.ZOO, "toy", {"url": "https://example.com/toy.pdparams", "sha256": "1" * 64}
    )
    monkeypatch.setattr(zoo, "_open", lambda *a, **k: _FakeResponse([BODY], length=len(BODY)))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        resolve_weights("toy", cache_dir=str(tmp_path))
    assert _files(tmp_path) == []
