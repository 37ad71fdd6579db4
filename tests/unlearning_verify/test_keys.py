import json
import os
import stat

import pytest

from labcore.errors import InputError
from unlearning_verify.keys import OwnerKey


def test_prf_is_keyed_and_deterministic():
    a = OwnerKey.generate(0, "lsb", 10, seed=1)
    assert a.prf("x", 100) == OwnerKey.generate(0, "lsb", 10, seed=1).prf("x", 100)
    assert a.prf("x", 100) != OwnerKey.generate(0, "lsb", 10, seed=2).prf("x", 100)
    assert a.prf("x", 64) != a.prf("y", 64)
    assert len(a.prf("x", 1000)) == 1000
    assert OwnerKey.generate(0, "lsb", 10).secret != OwnerKey.generate(0, "lsb", 10).secret


def test_secret_never_in_repr():
    key = OwnerKey.generate(3, "lsb", 10)
    assert key.secret.hex() not in repr(key) and key.secret.hex() not in str(key)


def test_key_file_is_owner_only_even_with_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        key = OwnerKey.generate(2, "blended", 10)
        key.save(tmp_path / "k.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600
    loaded = OwnerKey.load(tmp_path / "k.json")
    assert loaded == key and loaded.target_label() == key.target_label()


def test_existing_key_file_is_not_overwritten(tmp_path):
    OwnerKey.generate(0, "lsb", 10).save(tmp_path / "k.json")
    before = (tmp_path / "k.json").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        OwnerKey.generate(0, "lsb", 10).save(tmp_path / "k.json")
    assert (tmp_path / "k.json").read_bytes() == before


def test_load_rejects_missing_readable_and_malformed(tmp_path):
    with pytest.raises(InputError, match="not found"):
        OwnerKey.load(tmp_path / "none.json")
    OwnerKey.generate(0, "lsb", 10).save(tmp_path / "k.json")
    os.chmod(tmp_path / "k.json", 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        OwnerKey.load(tmp_path / "k.json")
    bad = tmp_path / "bad.json"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"secret": "00"}).encode())
    os.close(fd)
    with pytest.raises(InputError, match="not a poisonlab key file"):
        OwnerKey.load(bad)
