"""Models and caches share one per-user folder on every platform."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from SATSegmentLib import modelstore
from SATSegmentLib.model import default_cache_dir


@pytest.mark.parametrize("platform, env, expected", [
    ("win32", {"LOCALAPPDATA": "C:/Users/rad/AppData/Local"}, Path("C:/Users/rad/AppData/Local/satsegment")),
    ("darwin", {}, Path.home() / "Library" / "Caches" / "satsegment"),
    ("linux", {"XDG_CACHE_HOME": "/var/cache/rad"}, Path("/var/cache/rad/satsegment")),
])
def test_models_and_embedding_cache_share_the_platform_folder(monkeypatch, platform, env, expected):
    monkeypatch.delenv("SATSEGMENT_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert modelstore.model_home() == expected
    assert default_cache_dir() == expected / "cache"


def test_satsegment_home_overrides_both(monkeypatch, tmp_path):
    monkeypatch.setenv("SATSEGMENT_HOME", str(tmp_path))
    assert modelstore.model_home() == tmp_path
    assert default_cache_dir() == tmp_path / "cache"
