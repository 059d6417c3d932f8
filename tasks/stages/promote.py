"""The ``promote`` and ``rollback`` stages: move the ``champion`` alias, forward through the gates
or back to the previous champion, recording who, when and why as tags on the versions.

:func:`fall_back_to_persistence` is the monitor's move when the champion ranks below persistence
for long: a persistence predictor is registered as a new version of the same model (so it is
served by the same code, following the same alias) and made champion, with why, since when and
from which version in tags on the version and on the registered model (``fallback.*``). A
retrained challenger that passes its gates takes ``champion`` back through :func:`promote`, and
:func:`rollback` undoes the fall-back by hand; either clears the model's ``fallback.*`` tags.

Each change reads the champion, tags the versions and moves the alias under the registry's alias
lock (:func:`tasks.io.registry.alias_lock`): of two racing changes one is done whole and the other
fails with :class:`tasks.io.registry.AliasBusy` and changes nothing, so no change is lost and
``previous_champion`` is always the version the alias really left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.core.models import SpikePredictor
from tasks.io import model_cards, model_store, reference
from tasks.io.registry import (
    CHALLENGER,
    CHAMPION,
    PASS_TAG,
    RegistryError,
    alias_lock,
    alias_version,
    champion_history,
    connect,
    experiment_id,
    git_sha,
    model_name,
    move_alias,
    now_iso,
    register_version,
    set_champion_history,
    tag_version,
    version_tags,
    who_or_user,
)
from tasks.settings import Settings

log = logging.getLogger("cryptovol.promote")


@dataclass(frozen=True)
class AliasChange:
    action: str  # "promote" | "rollback" | "fallback" | "none"
    champion: str | None
    previous: str | None
    baseline_champion: str | None
    who: str
    why: str

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _move_baseline(client: MlflowClient, settings: Settings, ml_version: str) -> str | None:
    baseline_version = version_tags(client, model_name(settings), ml_version).get(
        "baseline_version"
    )
    if baseline_version:
        client.set_registered_model_alias(
            model_name(settings, "baseline"), CHAMPION, baseline_version
        )
    return baseline_version


FALLBACK_TAGS = ("fallback.version", "fallback.since", "fallback.reason", "fallback.from_version")


def fallback_state(client: MlflowClient, name: str) -> dict[str, str] | None:
    """The fall-back being served (version, since, reason, from_version), or None."""
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return None
    state = {key.removeprefix("fallback."): tags[key] for key in FALLBACK_TAGS if key in tags}
    return state if state.get("version") else None


def _end_fallback(client: MlflowClient, name: str, new_champion: str) -> None:
    """Clear the model's ``fallback.*`` tags once the champion is no longer the fall-back."""
    state = fallback_state(client, name)
    if state and state["version"] != new_champion:
        for key in FALLBACK_TAGS:
            client.delete_registered_model_tag(name, key)
        log.info(
            "%s no longer serves the persistence fallback (version %s)", name, state["version"]
        )


def promote(
    settings: Settings,
    version: str | int | None = None,
    *,
    force: bool = False,
    who: str | None = None,
    why: str | None = None,
) -> AliasChange:
    """Move ``champion`` to ``version`` (default: the challenger) if its gate decision passed.

    Without ``force`` the version must carry ``validation.decision=pass``. The previous champion
    is remembered (``previous_champion`` tag and the model's champion history).
    """
    client = connect(settings)
    name = model_name(settings)
    if version is None:
        version = alias_version(client, name, CHALLENGER)
        if version is None:
            raise RegistryError(
                f"{name} has no {CHALLENGER!r} alias: train first or name a version"
            )
    version = str(version)
    try:
        tags = version_tags(client, name, version)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    decision = tags.get(PASS_TAG)
    if decision != "pass" and not force:
        raise RegistryError(
            f"{name} version {version} has {PASS_TAG}={decision or 'none'}: validate it first "
            f"(its gates must pass) or promote with --force"
        )
    who = who_or_user(who)
    why = why or ("validation passed" if decision == "pass" else f"forced ({PASS_TAG}={decision})")
    with alias_lock(client, name, action=f"promote of version {version}", who=who):
        current = alias_version(client, name, CHAMPION)
        if current == version:
            return AliasChange("none", version, current, None, who, "already champion")
        history = champion_history(client, name)
        if current and (not history or history[-1] != current):
            history.append(current)  # the alias was set by hand: remember it too
        history.append(version)
        now = now_iso()
        tag_version(
            client,
            name,
            version,
            {
                "promoted_at": now,
                "promoted_by": who,
                "promotion_reason": why,
                "promotion_forced": str(force and decision != "pass").lower(),
                "previous_champion": current or "",
            },
        )
        if current:
            tag_version(
                client,
                name,
                current,
                {"demoted_at": now, "demoted_by": who, "replaced_by": version},
            )
        move_alias(client, name, CHAMPION, version, expected=current)
        set_champion_history(client, name, history)
        _end_fallback(client, name, version)
        if alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        baseline = _move_baseline(client, settings, version)
    model_cards.refresh(
        client, settings, {"ml": [v for v in (version, current) if v], "baseline": [baseline or ""]}
    )
    log.info("promoted %s version %s (was %s) by %s: %s", name, version, current, who, why)
    return AliasChange("promote", version, current, baseline, who, why)


def rollback(settings: Settings, *, who: str | None = None, why: str | None = None) -> AliasChange:
    """Move ``champion`` back to the previous champion.

    The previous champion is the top of the champion history, after dropping the current
    champion from it; when no history exists, the current version's ``previous_champion`` tag.
    """
    client = connect(settings)
    name = model_name(settings)
    who = who_or_user(who)
    why = why or "rollback"
    with alias_lock(client, name, action="rollback", who=who):
        current = alias_version(client, name, CHAMPION)
        if current is None:
            raise RegistryError(f"{name} has no {CHAMPION!r} alias: nothing to roll back")
        history = champion_history(client, name)
        if history and history[-1] == current:
            history.pop()
        target = (
            history[-1] if history else version_tags(client, name, current).get("previous_champion")
        )
        if not target or target == current:
            raise RegistryError(f"no previous champion of {name} recorded before version {current}")
        now = now_iso()
        tag_version(
            client,
            name,
            current,
            {"rolled_back_at": now, "rolled_back_by": who, "rollback_reason": why},
        )
        tag_version(
            client, name, target, {"restored_at": now, "restored_by": who, "restore_reason": why}
        )
        move_alias(client, name, CHAMPION, target, expected=current)
        set_champion_history(client, name, history or [target])
        _end_fallback(client, name, target)
        baseline = _move_baseline(client, settings, target)
    model_cards.refresh(client, settings, {"ml": [target, current], "baseline": [baseline or ""]})
    log.info("rolled %s champion back from %s to %s by %s: %s", name, current, target, who, why)
    return AliasChange("rollback", target, current, baseline, who, why)


def _register_fallback(
    client: MlflowClient, settings: Settings, predictor: SpikePredictor, rows: pd.DataFrame
) -> tuple[str, str]:
    """Log the persistence predictor in a run of its own (its fitting rows as the drift
    reference) and register it as a new version of the ML model; (version, run id)."""
    with mlflow.start_run(
        experiment_id=experiment_id(settings, client), run_name="fallback-persistence"
    ) as run:
        mlflow.set_tags({"stage": "fallback", "model_kind": predictor.kind})
        mlflow.log_params({"threshold": predictor.threshold, "rows": len(rows)})
        info = model_store.log_model("model", predictor, rows)
        reference.log_reference_sample(rows, {"train_end": None})
    return register_version(client, info, model_name(settings), run.info.run_id), run.info.run_id


def fall_back_to_persistence(
    settings: Settings,
    predictor: SpikePredictor,
    rows: pd.DataFrame,
    *,
    from_version: str,
    why: str,
    who: str = "monitor",
) -> AliasChange:
    """Register ``predictor`` (persistence, fit on ``rows``) and make it champion in place of
    ``from_version``; :class:`tasks.io.registry.AliasMoved` if the champion is no longer that
    version (someone moved it since the monitor judged it)."""
    client = connect(settings)
    name = model_name(settings)
    judged = version_tags(client, name, from_version)
    version, run_id = _register_fallback(client, settings, predictor, rows)
    now = now_iso()
    tag_version(
        client,
        name,
        version,
        {
            "variant": "ml",
            "model_kind": predictor.kind,
            "threshold": str(predictor.threshold),
            "tau": str(predictor.label.get("tau")),
            "label_mode": str(predictor.label.get("mode")),
            "run_id": run_id,
            "git_sha": git_sha(),
            "baseline_version": judged.get("baseline_version", ""),
            "fallback": "true",
            "fallback.reason": why,
            "fallback.since": now,
            "fallback.from_version": from_version,
        },
    )
    with alias_lock(client, name, action=f"fall-back to persistence version {version}", who=who):
        history = champion_history(client, name)
        if not history or history[-1] != from_version:
            history.append(from_version)
        history.append(version)
        tag_version(
            client,
            name,
            version,
            {
                "promoted_at": now,
                "promoted_by": who,
                "promotion_reason": f"fallback: {why}",
                "previous_champion": from_version,
            },
        )
        tag_version(
            client,
            name,
            from_version,
            {"demoted_at": now, "demoted_by": who, "replaced_by": version},
        )
        move_alias(client, name, CHAMPION, version, expected=from_version)
        set_champion_history(client, name, history)
        state = {"version": version, "since": now, "reason": why, "from_version": from_version}
        for key, value in state.items():
            client.set_registered_model_tag(name, f"fallback.{key}", str(value)[:5000])
        baseline = _move_baseline(client, settings, version)
    model_cards.refresh(
        client, settings, {"ml": [version, from_version], "baseline": [baseline or ""]}
    )
    log.warning(
        "%s falls back to persistence version %s (was %s): %s", name, version, from_version, why
    )
    return AliasChange("fallback", version, from_version, baseline, who, why)
