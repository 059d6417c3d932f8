"""One typed settings object, read from the environment.

The tools' own variables (``KAFKA_BOOTSTRAP_SERVERS``, ``MLFLOW_TRACKING_URI``, ``PREFECT_API_URL``)
are honoured as they are; everything else is ``CRYPTOVOL_<NAME>``. Reading settings has no side
effects: no directory is created and nothing is connected.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

COINBASE_WS_URL = "wss://advanced-trade-ws.coinbase.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRYPTOVOL_", frozen=True, extra="forbid", populate_by_name=True
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "CRYPTOVOL_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    raw_topic: str = "ticks.raw"
    features_topic: str = "ticks.features"
    predictions_topic: str = "ticks.predictions"
    dlq_topic: str = "ticks.raw.dlq"
    features_dlq_topic: str = "ticks.features.dlq"  # feature records the scorer cannot score
    raw_partitions: int = 3
    kafka_connect_timeout_s: float = 5.0

    # Exchange
    ws_url: str = COINBASE_WS_URL
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    idle_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 10.0

    # Storage
    data_dir: Path = Path(".cryptovol")

    # The batch side's Dask cluster: a running scheduler's address (tcp://host:8786), or empty
    # for a local cluster of worker processes started per run (tasks/io/dask_cluster.py)
    dask_address: str = ""

    # Training reads: up to this many rows per product, a contiguous session of each day, and up
    # to train_max_rows in all, shared equally by the products (0: no cap), so a store of many
    # products and months trains in bounded memory (tasks/core/row_budget.py)
    train_max_rows_per_product: int = Field(100_000, ge=0)
    train_max_rows: int = Field(1_000_000, ge=0)

    # Monitoring (monitoring/prometheus/alerts.yml uses the same limits; a test keeps them equal)
    pushgateway_url: str = "http://127.0.0.1:9091"  # empty: figures are not pushed
    drift_share_limit: float = 0.5  # share of drifted features that counts as drift
    drift_checks_to_retrain: int = 2  # consecutive checks over the limit that start a retraining
    live_min_positives: int = 20  # spikes a window needs before its PR-AUC is compared
    fallback_checks: int = 2  # consecutive 1 h checks below persistence before serving it
    monitor_minutes: float = 60.0  # the latest features a drift check judges
    reports_keep_days: float = 7.0  # drift reports older than this are deleted (index stays)
    reports_port: int = 8090  # `cryptovol reports` serves reports_dir on metrics_host here

    # Metrics
    metrics_host: str = "127.0.0.1"
    capture_metrics_port: int = 9101
    featurize_metrics_port: int = 9102
    scorer_metrics_port: int = 9103

    # Ports of the local stack's servers (cryptovol up)
    service_port: int = 3000
    mlflow_port: int = 5000
    prefect_port: int = 4200
    prometheus_port: int = 9090
    alert_inbox_port: int = 9094  # the local webhook receiver that writes deliveries to a file

    # Alertmanager: where `up` starts it, and where the scorer sends spike alerts (empty: not
    # sent; `up` sets it to the Alertmanager it starts).
    alertmanager_port: int = 9093
    alertmanager_url: str = ""
    # Alert receivers (monitoring/alertmanager.yml): empty means not configured; the local inbox
    # (``alert_inbox_path``) always receives.
    alert_webhook_url: str = ""  # any HTTP endpoint taking Alertmanager's webhook JSON
    alert_slack_url: str = ""  # a Slack (or Slack-compatible) incoming webhook
    alert_slack_channel: str = "#cryptovol"

    # Spike episodes (tasks/core/episodes.py): an episode closes after this long without a
    # prediction at or above the threshold; the scorer sends one alert per episode.
    episode_quiet_s: float = Field(120.0, gt=0)
    alerts_topic: str = "ticks.alerts"

    # MLflow (empty: a SQLite store under data_dir)
    mlflow_tracking_uri: str = Field(
        "", validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CRYPTOVOL_MLFLOW_TRACKING_URI")
    )
    registered_model: str = "volatility-spike"

    # Serving (the BentoML service and the scorer): which registered model, how often to look
    # for a moved alias. ``MODEL_VARIANT=baseline`` serves the z-score baseline.
    model_variant: Literal["ml", "baseline"] = Field(
        "ml", validation_alias=AliasChoices("MODEL_VARIANT", "CRYPTOVOL_MODEL_VARIANT")
    )
    model_poll_s: float = Field(10.0, gt=0)

    # Derived folders under data_dir: the one home of each path.
    @property
    def archive_dir(self) -> Path:
        """Raw archive written by capture (gzip NDJSON per product, hour and connection)."""
        return self.data_dir / "archive"

    @property
    def feature_store_dir(self) -> Path:
        """Backfilled features and labels, partitioned by product and date."""
        return self.data_dir / "features"

    @property
    def backfill_cache_dir(self) -> Path:
        """Backfills of recordings given to train/evaluate/validate, keyed by the files."""
        return self.data_dir / "cache" / "backfill"

    @property
    def quarantine_dir(self) -> Path:
        """Batches that failed their data contract, each with its report."""
        return self.data_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        """Validation and drift reports."""
        return self.data_dir / "reports"

    @property
    def alert_inbox_path(self) -> Path:
        """Alertmanager's deliveries to the local inbox, one JSON notification per line."""
        return self.data_dir / "alerts" / "inbox.jsonl"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
