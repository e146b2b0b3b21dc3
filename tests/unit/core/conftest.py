"""Fixtures for the functional-core tests.

Everything is a plain value: the core is pure, so a test builds its inputs with
tests.support.builders, calls one function and looks at the result (tests.support.plans runs
passes in a row the way the reconciler does).
"""

from __future__ import annotations

import pytest

from tests.support.policies import FAMILIES


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
