"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread while a module's tests run, the previous count restored after.

    The test machine's cores are shared (by parallel test workers, or other work): there, 2
    threads run small models many times slower than 1, and small models train fastest (and
    identically) on one thread. Use with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    import torch  # only the modules that ask for it pay for importing torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
