"""Every command-line test runs with an isolated model cache (never the user's, never the internet)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(isolated_model_home):
    return isolated_model_home
