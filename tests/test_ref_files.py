"""Atomic writes: whole files with ordinary permissions, no temporary files left behind."""

import os
import stat

import pytest

from wrapkit.common.files import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_write_mode_and_content(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "sub" / "a.txt", "hello\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        private = atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert path.read_text() == "hello\n" and private.read_bytes() == b"\x00\x01"
    assert atomic_write_json(tmp_path / "c.json", {"a": 1}).read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.bin", "c.json", "sub"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails mid-write
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
