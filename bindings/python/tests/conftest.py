from __future__ import annotations

from typing import Iterator

import pytest

from wfengine.testing import TestEngine


@pytest.fixture
def engine() -> Iterator[TestEngine]:
    with TestEngine() as e:
        yield e
