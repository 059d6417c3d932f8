"""Which tests share a pytest-xdist worker, and the scheduler that keeps each group on one.

A test joins a group when it shares costly state with others: the session fixtures in
``SESSION_GROUPS`` (set up again on every worker that runs one of their tests, and holding state
the tests move: the served champion, a work pool's deployments), or a module-scoped fixture (set
up once per worker). An ``xdist_group`` mark names a group by hand.

xdist's own ``--dist loadgroup`` reads the marks by appending the group to each test's id, which
pytest 9.2 ignores (a node's id is no longer a plain attribute): every test would be scheduled
alone. So each worker writes the groups of its collection to a file the controller named, and
the controller's scheduler, xdist's ``LoadScopeScheduling`` with that file as its scope rule,
hands each group to one worker whole; a test without a group is a unit of its own.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest

GROUPS_PATH = "cryptovol_groups_path"  # key of the file's path in each worker's workerinput
SESSION_GROUPS = {"serving_stack": "serving", "prefect_server": "prefect"}  # fixture -> group


def group_of(item: pytest.Item) -> str | None:
    """The item's group: its ``xdist_group`` mark, its session group, or its module when it uses
    a module- or class-scoped fixture; None if it can run anywhere."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    group = next((g for name, g in SESSION_GROUPS.items() if name in item.fixturenames), None)
    if group is not None:
        return group
    fixtures = getattr(item, "_fixtureinfo", None)
    defs = fixtures.name2fixturedefs.values() if fixtures is not None else ()
    if any(d[-1].scope in ("module", "class") for d in defs):
        return item.nodeid.split("::")[0]
    return None


def write_groups(path: Path, items: list[pytest.Item]) -> None:
    """Writes test id -> group for the grouped items (whole or not at all: the workers race)."""
    groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(groups))
    partial.replace(path)


@cache
def _read_groups(path: Path) -> dict[str, str]:
    return json.loads(path.read_text())


def make_scheduler(config: pytest.Config, log, path: Path):
    """xdist's scope scheduler, with the groups the workers wrote to ``path`` as scopes."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _read_groups(path).get(nodeid, nodeid)

    return GroupScheduling(config, log)
