"""The filesystem storage adapter: single and batch writes are whole or absent."""

from __future__ import annotations

import pytest

from radcds_imaging.adapters.storage import FilesystemInstanceStore


def test_put_many_writes_every_file_and_leaves_no_temporary_file(tmp_path):
    store = FilesystemInstanceStore(tmp_path / "store")
    store.put_many([("s/1/a.dcm", b"first"), ("s/2/b.dcm", b"second")])
    assert store.get("s/1/a.dcm") == b"first" and store.get("s/2/b.dcm") == b"second"
    assert not [p for p in (tmp_path / "store").rglob(".incoming-*")]


def test_put_many_with_a_bad_key_raises_and_keeps_none_of_the_batch(tmp_path):
    store = FilesystemInstanceStore(tmp_path / "store")
    with pytest.raises(ValueError, match="escapes"):
        store.put_many([("s/1/a.dcm", b"first"), ("../outside.dcm", b"evil")])
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert not (tmp_path / "outside.dcm").exists()


def test_get_of_an_absent_key_raises_file_not_found(tmp_path):
    store = FilesystemInstanceStore(tmp_path / "store")
    with pytest.raises(FileNotFoundError):
        store.get("nothing/here.dcm")
