"""Racing alias changes on a real MLflow store (SQLite, and the tracking server over REST).

A promote is held inside its change (after it read the champion, before it moved the alias)
while a rollback runs; before the alias lock, both reported success, the rollback was lost and
the promoted version's ``previous_champion`` named a version that was no longer champion. Now
one change is done whole and the other fails saying so, changing nothing.
"""

from __future__ import annotations

import threading

import pytest

from tasks.io import registry
from tasks.io.registry import CHAMPION, AliasBusy, RegistryError
from tasks.settings import Settings
from tasks.stages import promote as promote_stage
from tasks.stages.promote import promote, rollback

# on the serving tests' xdist worker: one case races on their registry (``serving_stack``)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("serving")]

WAIT_S = 120  # a safety net against a hung test, never an assertion


def _versions(settings: Settings) -> tuple[str, str]:
    client = registry.connect(settings)
    found = client.search_model_versions(f"name='{registry.model_name(settings)}'")
    first, second = sorted((str(v.version) for v in found), key=int)[:2]
    return first, second


def _race(settings: Settings, monkeypatch) -> tuple[object, object]:
    """A promote held between reading the champion and moving it, a rollback meanwhile."""
    held, release = threading.Event(), threading.Event()
    tag_version = promote_stage.tag_version

    def held_tag_version(*args, **kwargs):
        if threading.current_thread().name == "promoter" and not held.is_set():
            held.set()
            release.wait(WAIT_S)
        return tag_version(*args, **kwargs)

    monkeypatch.setattr(promote_stage, "tag_version", held_tag_version)
    _, second = _versions(settings)
    outcome: dict[str, object] = {}

    def run_promote() -> None:
        try:
            outcome["promote"] = promote(settings, second, force=True, who="promoter")
        except RegistryError as exc:
            outcome["promote"] = exc

    promoter = threading.Thread(target=run_promote, name="promoter")
    promoter.start()
    assert held.wait(WAIT_S)
    try:
        outcome["rollback"] = rollback(settings, who="roller")
    except RegistryError as exc:
        outcome["rollback"] = exc
    release.set()
    promoter.join(WAIT_S)
    return outcome["promote"], outcome["rollback"]


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_promote_and_rollback_racing(store, request, monkeypatch):
    settings = (
        request.getfixturevalue("sqlite_registry")
        if store == "sqlite"
        else request.getfixturevalue("serving_stack").settings
    )
    client = registry.connect(settings)
    name = registry.model_name(settings)
    first, second = _versions(settings)
    # champion `first`, and `second` before it: a rollback has somewhere to go
    promote(settings, second, force=True, who="tests")
    promote(settings, first, force=True, who="tests")
    try:
        promoted, rolled_back = _race(settings, monkeypatch)
        # the promote held the lock: it is done whole, the rollback changed nothing
        assert not isinstance(promoted, Exception), promoted
        assert isinstance(rolled_back, AliasBusy)
        assert "promote of version" in str(rolled_back) and "changed nothing" in str(rolled_back)
        assert promoted.previous == first
        assert registry.alias_version(client, name, CHAMPION) == second
        assert registry.version_tags(client, name, second)["previous_champion"] == first
        assert registry.champion_history(client, name)[-2:] == [first, second]
        # the lock is gone: the rollback the user runs again goes through
        again = rollback(settings, who="roller")
        assert (again.previous, again.champion) == (second, first)
    finally:
        monkeypatch.undo()
        promote(settings, first, force=True, who="tests")  # the fixtures' champion


def test_alias_moved_by_hand_is_refused(sqlite_registry):
    """A change that finds the alias elsewhere than it expected moves nothing."""
    client = registry.connect(sqlite_registry)
    name = registry.model_name(sqlite_registry)
    first, second = _versions(sqlite_registry)
    promote(sqlite_registry, first, force=True, who="tests")
    refused = pytest.raises(registry.AliasMoved, match=f"moved to {first} \\(expected {second}\\)")
    with refused, registry.alias_lock(client, name, action="test", who="tests"):
        registry.move_alias(client, name, CHAMPION, second, expected=second)
    assert registry.alias_version(client, name, CHAMPION) == first


def test_stale_lock_is_broken(sqlite_registry):
    """A lock left by a change that died does not block the registry for ever."""
    client = registry.connect(sqlite_registry)
    name = registry.model_name(sqlite_registry)
    lock = name + registry.LOCK_SUFFIX
    client.create_registered_model(
        lock, tags={"action": "promote", "holder": "gone", "since": "2020-01-01T00:00:00+00:00"}
    )
    with registry.alias_lock(client, name, action="test", who="tests"):
        assert client.get_registered_model(lock).tags["holder"] == "tests"
    assert not client.search_registered_models(f"name='{lock}'")
