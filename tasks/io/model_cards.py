"""Descriptions in the MLflow registry, where users promote and roll back: the registered models
and every version say what they are, what data they saw, how they rank beside both baselines, and
what validation and promotion decided. Built from the versions' tags (the record of truth) and
rewritten whenever one of those changes: after training, validation, promotion and rollback."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from tasks.io.registry import CHAMPION, PASS_TAG, alias_version, model_name, version_tags
from tasks.settings import Settings

KINDS = {
    "har_rv": "HAR-RV regression of log forward volatility on scale-free log volatilities and "
    "ranges; the spike probability is P(forward vol >= tau) under the predicted distribution",
    "har_logistic": "HAR-style logistic regression on log volatilities of several horizons",
    "xgboost": "gradient-boosted trees on every feature",
    "random_forest": "a shallow random forest on every feature",
    "stack": "the mean of the HAR logistic and XGBoost probabilities",
    "persistence": "persistence baseline: the current 60 s realized volatility, calibrated",
    "zscore": "z-score baseline: recent against trailing volatility, calibrated",
}


def _figure(tags: dict[str, str], key: str) -> str:
    value = tags.get(key)
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return "n/a"


def version_description(version: str, tags: dict[str, str]) -> str:
    """Markdown for one version, from its tags."""
    kind = tags.get("model_kind", "unknown")
    lines = [
        f"**{kind}** (version {version}, variant {tags.get('variant', 'ml')}): "
        f"{KINDS.get(kind, 'a spike scorer')}.",
        "",
        f"- Trained on {tags.get('train_start', '?')} to {tags.get('train_end', '?')} "
        f"(data {tags.get('data_fingerprint', '?')}, feature set "
        f"{tags.get('feature_set_version', '?')}, commit {tags.get('git_sha', '?')}).",
        f"- Label: {tags.get('label_mode', '?')}, tau {_figure(tags, 'tau')}; operating "
        f"threshold {_figure(tags, 'threshold')}.",
    ]
    if tags.get("variant", "ml") == "ml":
        lines.append(
            f"- Test part PR-AUC: model {_figure(tags, 'test_pr_auc')}, persistence "
            f"{_figure(tags, 'test_persistence_pr_auc')}, z-score "
            f"{_figure(tags, 'test_baseline_pr_auc')}."
        )
        if "loso_pr_auc" in tags:
            lines.append(
                f"- Sessions left out ({tags.get('loso_sessions', '?')}), pooled PR-AUC: model "
                f"{_figure(tags, 'loso_pr_auc')}, persistence "
                f"{_figure(tags, 'loso_persistence_pr_auc')}, z-score "
                f"{_figure(tags, 'loso_zscore_pr_auc')}."
            )
        decision = tags.get(PASS_TAG)
        if decision:
            lines.append(
                f"- Validation: **{decision}** ({tags.get('validation.reason', '')}) at "
                f"{tags.get('validation.at', '?')}."
            )
        else:
            lines.append("- Validation: not yet (`prefect deployment run validate/validate`).")
    else:
        lines.append(
            "- The fallback served with MODEL_VARIANT=baseline; trained beside ML version "
            f"{tags.get('ml_version', '?')}."
        )
    if tags.get("degraded") == "true":
        lines.append("- **Degraded on purpose** (shuffled labels): a drill for the gates.")
    if tags.get("promoted_at"):
        lines.append(
            f"- Promoted to champion at {tags['promoted_at']} by {tags.get('promoted_by', '?')}: "
            f"{tags.get('promotion_reason', '')}."
        )
    if tags.get("rolled_back_at"):
        lines.append(
            f"- Rolled back at {tags['rolled_back_at']} by {tags.get('rolled_back_by', '?')}: "
            f"{tags.get('rollback_reason', '')}."
        )
    if tags.get("restored_at"):
        lines.append(
            f"- Restored as champion at {tags['restored_at']} by {tags.get('restored_by', '?')}: "
            f"{tags.get('restore_reason', '')}."
        )
    return "\n".join(lines)


def model_description(name: str, variant: str, champion: str | None) -> str:
    """Markdown for a registered model: what it is, where the champion is, how to move it."""
    what = (
        "Real-time crypto volatility-spike detector: the probability that the forward realized "
        "volatility of 1-second mid returns over the next 60 s reaches tau."
        if variant == "ml"
        else "The z-score baseline of the detector, served with MODEL_VARIANT=baseline; its "
        "champion alias follows the ML champion."
    )
    return "\n".join(
        [
            what,
            "",
            f"- Champion: {'version ' + champion if champion else 'none yet'} "
            f"(`models:/{name}@{CHAMPION}`, served by `bentoml serve` and `cryptovol score`).",
            "- Promote: `cryptovol promote [VERSION]` (gates must have passed) or set the "
            "`champion` alias here; roll back: `cryptovol rollback --why ...`.",
            "- Each version's description gives its data span, PR-AUC beside both baselines and "
            "the validation decision.",
        ]
    )


def refresh(client: MlflowClient, settings: Settings, versions: dict[str, list[str]]) -> None:
    """Rewrite the descriptions of the given versions (by variant) and of both models."""
    for variant in ("ml", "baseline"):
        name = model_name(settings, variant)
        for version in filter(None, versions.get(variant, [])):
            tags = version_tags(client, name, version)
            client.update_model_version(
                name, version, description=version_description(version, tags)
            )
        champion = alias_version(client, name, CHAMPION)
        client.update_registered_model(name, description=model_description(name, variant, champion))
