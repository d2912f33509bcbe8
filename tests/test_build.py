"""The suite runs the build it was asked to run (``make unit-compiled``)."""

from __future__ import annotations

import os

from conftest import engine_build


def test_engine_build_is_the_expected_one() -> None:
    expected = os.environ.get("RAFTCORE_EXPECT_BUILD", "pure")
    assert engine_build() == expected
