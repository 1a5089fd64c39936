"""Fixtures of the sync tests: ``company`` (see tests/sync_engine/company.py) and ``demo_workdir``
(one completed demo run per session, see tests/demo_fixture.py)."""

from __future__ import annotations

from tests.demo_fixture import demo_workdir
from tests.sync_engine.company import company

__all__ = ["company", "demo_workdir"]
