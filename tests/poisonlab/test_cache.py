from pathlib import Path

from poisonlab.cache import cache_root
from poisonlab.demo import user_cache


def test_cache_root_prefers_the_lab_variable_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POISONLAB_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "poisonlab")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "poisonlab"
    monkeypatch.setenv("POISONLAB_CACHE_DIR", str(tmp_path / "lab"))
    assert cache_root() == tmp_path / "lab"
    assert user_cache("t2i-base") == tmp_path / "lab" / "t2i-base"
