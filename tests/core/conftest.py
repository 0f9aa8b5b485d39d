"""Fixtures of the core tests."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest


@pytest.fixture
def no_show(monkeypatch):
    """Fails a test that calls ``plt.show()``; closes its figures afterwards."""

    def forbidden(*args, **kwargs):
        raise AssertionError("plt.show() must not be called")

    monkeypatch.setattr(plt, "show", forbidden)
    yield
    plt.close("all")
