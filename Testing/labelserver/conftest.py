"""Fixtures of the server tests: an isolated model cache for every test and an engine serving the tiny model."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(isolated_model_home):
    return isolated_model_home


@pytest.fixture
def engine(tiny_model_dir):
    """An `InferEngine` serving the tiny model as 'tiny', on the CPU."""
    from SATSegmentLib.labelserver.engine import InferEngine
    from SATSegmentLib.labelserver.params import ServerSettings

    return InferEngine(ServerSettings(models={"tiny": str(tiny_model_dir)}, device="cpu", feature_cache_mb=256))
