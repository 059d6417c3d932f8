"""The MLflow registry: the store, the two registered models, their aliases and tags.

Two registered models, versioned alike:

- ``volatility-spike`` (``Settings.registered_model``): the selected candidate;
- ``volatility-spike-baseline``: the z-score baseline fit in the same run, the served fallback
  (``MODEL_VARIANT=baseline``). Its ``champion`` alias follows the ML champion (tag
  ``baseline_version`` on the ML version).

Aliases ``challenger`` (set by training) and ``champion`` (served, set by promotion). A champion
history kept as a tag on the registered model lets a rollback find the previous champion even
after the alias was moved by hand in the MLflow UI. Version numbers are ``int`` on SQLite and
``str`` over REST: every function here returns ``str``. Promotion and rollback themselves are the
stage :mod:`tasks.stages.promote`; logging a training run is :mod:`tasks.stages.train`.

A registry that cannot be reached is not a missing alias. :func:`connect` checks a tracking server
within seconds and raises :class:`RegistryUnavailable` ("cannot reach the MLflow tracking server
at URI") instead of letting MLflow retry for minutes; the look-ups here return None (or raise
:class:`RegistryError` naming what is missing) only when the registry answered that it is
missing, and raise :class:`RegistryUnavailable` when it could not be asked. A local SQLite store
is created once, under a file lock, so concurrent first runs do not race MLflow's schema
migration.

MLflow has no compare-and-set on an alias, so every move of ``champion`` (promote, rollback, the
monitor's fall-back to persistence) runs under :func:`alias_lock`: a registered model named
``<name>.alias-lock`` that exists while a change is under way. Creating a registered model is
atomic in every store (its name is the table's key), so of two racing changes one gets the lock
and the other fails at once with :class:`AliasBusy`, naming who holds it, and changes nothing.
Under the lock :func:`move_alias` re-reads the alias, refuses to move it if it is not where the
caller saw it (someone moved it by hand in the UI meanwhile) and reads it back after the move.
A lock left by a process that died is broken after :data:`LOCK_STALE_S` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.settings import Settings

log = logging.getLogger("cryptovol.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
VARIANTS = ("ml", "baseline")
HISTORY_TAG = "champion_history"
HISTORY_KEEP = 20
PASS_TAG = "validation.decision"
LOCK_SUFFIX = ".alias-lock"
LOCK_STALE_S = 300.0  # a lock older than this was left by a change that died: break it
CHECK_TIMEOUT_S = 3.0  # a tracking server that does not answer /health in this long is unreachable
_MISSING_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})
_created_stores: set[str] = set()  # SQLite stores this process has made sure exist


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (no challenger, no gate decision...)."""


class AliasBusy(RegistryError):
    """Another change of the aliases holds the lock: this one changed nothing."""


class AliasMoved(RegistryError):
    """The alias is not where the change expected it (moved meanwhile): nothing was changed."""


class RegistryUnavailable(RegistryError):
    """The MLflow tracking server cannot be reached: not the same as a missing alias or version."""


def unreachable_message(uri: str) -> str:
    return f"cannot reach the MLflow tracking server at {uri}"


def is_unreachable(exc: BaseException) -> bool:
    """Whether an error (an MlflowException wrapping a connection error) means no answer."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.ConnectionError | requests.Timeout):
            return True
        current = current.__cause__ or current.__context__
    return False


def is_missing(exc: MlflowException) -> bool:
    """Whether the registry answered that the model, version or alias asked for does not exist."""
    return exc.error_code in _MISSING_CODES and not is_unreachable(exc)


def registry_error(exc: MlflowException, uri: str, what: str) -> RegistryError:
    """The error to raise for an MLflow failure other than a missing object."""
    if is_unreachable(exc):
        return RegistryUnavailable(unreachable_message(uri))
    return RegistryError(f"{what} failed: {exc.message[:500]}")


def model_name(settings: Settings, variant: str = "ml") -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return settings.registered_model if variant == "ml" else f"{settings.registered_model}-baseline"


def model_uri(settings: Settings, variant: str = "ml", alias: str = CHAMPION) -> str:
    """``models:/<name>@<alias>``: what serving loads (``MODEL_VARIANT`` picks the variant)."""
    return f"models:/{model_name(settings, variant)}@{alias}"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' store; a tracking server must answer within seconds.

    Raises :class:`RegistryUnavailable` when it does not. A local SQLite store is created (its
    directory, its schema) once, under a lock.
    """
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///"):
        return _sqlite_client(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def check_server(uri: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise :class:`RegistryUnavailable` unless the server at ``uri`` answers HTTP at all."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (a proxy or an older server without /health): reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RegistryUnavailable(f"{unreachable_message(uri)} ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason)[:200]


def _sqlite_client(uri: str) -> MlflowClient:
    """A client of a local store, creating its schema once: MLflow's migration (run by the first
    client of a process) is not safe to run twice at once, so first clients take turns."""
    if uri in _created_stores:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # tracking tables and migrations
            client.search_registered_models(max_results=1)  # registry tables
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _created_stores.add(uri)
    return client


def experiment_id(settings: Settings, client: MlflowClient) -> str:
    """The project's experiment; with a SQLite store, artifacts go to ``mlartifacts`` beside it."""
    name = settings.registered_model
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def git_sha(cwd: Path | None = None) -> str:
    """The project's commit, ``+dirty`` when tracked files differ; ``unknown`` outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def register_version(client: MlflowClient, model_info: Any, name: str, run_id: str) -> str:
    """A new version of ``name`` from a logged model (over REST the model id must be given)."""
    with contextlib.suppress(MlflowException):  # it exists already
        client.create_registered_model(name)
    version = client.create_model_version(
        name, model_info.model_uri, run_id=run_id, model_id=model_info.model_id
    )
    return str(version.version)


def tag_version(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value)[:5000])


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the alias (or the model) does not exist.

    Raises :class:`RegistryUnavailable` when the registry cannot be asked.
    """
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise registry_error(exc, client.tracking_uri, f"reading alias {name}@{alias}") from exc


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """A version's tags; :class:`RegistryError` naming it when it does not exist."""
    try:
        return dict(client.get_model_version(name, version).tags)
    except MlflowException as exc:
        if is_missing(exc):
            raise RegistryError(f"{name} has no version {version}") from exc
        raise registry_error(exc, client.tracking_uri, f"reading {name} version {version}") from exc


def champion_history(client: MlflowClient, name: str) -> list[str]:
    try:
        raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    except MlflowException as exc:
        if is_missing(exc):
            return []
        raise registry_error(exc, client.tracking_uri, f"reading {name}") from exc
    return [v for v in raw.split(",") if v]


def set_champion_history(client: MlflowClient, name: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-HISTORY_KEEP:]))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def who_or_user(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record_validation(
    settings: Settings, version: str, decision: dict, run_id: str | None = None
) -> None:
    """Tag a model version with a gate decision (what ``promote`` without ``--force`` requires)."""
    client = connect(settings)
    tags = {
        PASS_TAG: decision["decision"],
        "validation.reason": decision["reason"],
        "validation.at": now_iso(),
    }
    if run_id:
        tags["validation.run_id"] = run_id
    tag_version(client, model_name(settings), version, tags)


def describe_aliases(settings: Settings) -> dict:
    """Where champion and challenger point, for both variants, plus the champion history."""
    client = connect(settings)
    out = {}
    for variant in VARIANTS:
        name = model_name(settings, variant)
        out[variant] = {
            alias: alias_version(client, name, alias) for alias in (CHAMPION, CHALLENGER)
        }
    out["history"] = champion_history(client, model_name(settings))
    return out


def _lock_holder(client: MlflowClient, lock_name: str) -> dict[str, str] | None:
    try:
        return dict(client.get_registered_model(lock_name).tags)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise registry_error(exc, client.tracking_uri, f"reading {lock_name}") from exc


def _lock_age_s(holder: dict[str, str]) -> float:
    try:
        since = datetime.fromisoformat(holder.get("since", ""))
    except ValueError:
        return float("inf")  # no readable start: nobody can say it is alive
    return (datetime.now(UTC) - since).total_seconds()


def _take_lock(client: MlflowClient, lock_name: str, tags: dict[str, str]) -> bool:
    try:
        client.create_registered_model(
            lock_name, tags=tags, description="an alias change of the model is under way"
        )
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_ALREADY_EXISTS" and not is_unreachable(exc):
            return False
        raise registry_error(exc, client.tracking_uri, f"creating {lock_name}") from exc
    return True


def _drop_lock(client: MlflowClient, lock_name: str, token: str) -> None:
    """Delete the lock if it is still the one with ``token``."""
    holder = _lock_holder(client, lock_name)
    if holder is not None and holder.get("token", "") == token:
        try:
            client.delete_registered_model(lock_name)
        except MlflowException as exc:
            if not is_missing(exc):
                raise registry_error(exc, client.tracking_uri, f"deleting {lock_name}") from exc


@contextlib.contextmanager
def alias_lock(client: MlflowClient, name: str, *, action: str, who: str) -> Iterator[None]:
    """Hold the lock on ``name``'s aliases for one change; :class:`AliasBusy` if it is held."""
    lock_name = name + LOCK_SUFFIX
    token = uuid.uuid4().hex
    tags = {"action": action, "holder": who, "since": now_iso(), "token": token}
    if not _take_lock(client, lock_name, tags):
        holder = _lock_holder(client, lock_name) or {}
        if holder and _lock_age_s(holder) > LOCK_STALE_S:
            log.warning("breaking a stale alias lock of %s: %s", name, holder)
            _drop_lock(client, lock_name, holder.get("token", ""))
            taken = _take_lock(client, lock_name, tags)
        else:
            taken = not holder and _take_lock(client, lock_name, tags)  # released meanwhile
        if not taken:
            holder = _lock_holder(client, lock_name) or holder
            raise AliasBusy(
                f"another change of {name}'s aliases is in progress "
                f"({holder.get('action', '?')} by {holder.get('holder', '?')} since "
                f"{holder.get('since', '?')}): this {action} changed nothing; run it again when "
                f"that one has finished"
            )
    try:
        yield
    finally:
        _drop_lock(client, lock_name, token)


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str, *, expected: str | None
) -> None:
    """Point ``alias`` at ``version`` if it still points at ``expected``; read it back.

    Call it under :func:`alias_lock`. Raises :class:`AliasMoved` when the alias is not where the
    caller saw it, before or after the move (a hand move in the MLflow UI takes no lock).
    """
    found = alias_version(client, name, alias)
    if found != expected:
        raise AliasMoved(
            f"{name}@{alias} moved to {found} (expected {expected}) while this change was "
            f"being prepared: nothing was changed; look at the registry and run it again"
        )
    client.set_registered_model_alias(name, alias, version)
    found = alias_version(client, name, alias)
    if found != str(version):
        raise AliasMoved(
            f"{name}@{alias} points to {found}, not {version}, right after this change set it: "
            f"someone moved it at the same time; look at the registry"
        )
