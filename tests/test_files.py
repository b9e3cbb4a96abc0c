"""ppRestore.files: the one atomic writer and the one folder lister."""

from __future__ import annotations

import os

import pytest

from ppRestore.files import atomic_write, list_folder


def test_atomic_write_replaces_only_when_complete(tmp_path):
    p = tmp_path / "sub" / "a.bin"
    assert atomic_write(str(p), lambda f: f.write(b"one")) == str(p)
    assert p.read_bytes() == b"one"

    def broken(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(str(p), broken)
    assert p.read_bytes() == b"one" and os.listdir(p.parent) == ["a.bin"]


def test_atomic_write_check_discards_a_bad_file(tmp_path):
    p = tmp_path / "w.pdparams"

    def check(tmp):
        assert os.path.getsize(tmp) == 3
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"):
        atomic_write(str(p), lambda f: f.write(b"abc"), check=check)
    assert os.listdir(tmp_path) == []


def test_atomic_write_gives_default_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        p = tmp_path / "x"
        atomic_write(str(p), lambda f: f.write(b"x"), fsync=False)
        assert (os.stat(p).st_mode & 0o777) == 0o644
    finally:
        os.umask(umask)


def test_list_folder_filters_and_sorts(tmp_path):
    for n in ("b.PNG", "a.png", ".hidden.png", "notes.txt", "c.npy"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "d.png").mkdir()  # a folder named like an image
    got = list_folder(str(tmp_path), (".png", ".npy"))
    assert [os.path.basename(p) for p in got] == ["a.png", "b.PNG", "c.npy"]
    assert list_folder(str(tmp_path), (".jpg",)) == []
    with pytest.raises(OSError):
        list_folder(str(tmp_path / "missing"), (".png",))
