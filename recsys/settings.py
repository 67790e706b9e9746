"""One settings object for the whole project: defaults < `.env`-style file < environment.

Every path derives from `home` (default `.recsys/` in the working directory), so one
variable moves all local state. Nothing here creates folders or touches servers at import.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The families a pipeline may promote (popularity is the baseline every candidate must beat).
CandidateFamily = Literal["two_tower", "seq_two_tower", "ease", "ials", "item_knn", "two_stage"]


class Settings(BaseSettings):
    """All settings; each can be set as `RECSYS_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".recsys"), description="Folder for all local state")
    shared_data_dir: Path = Field(default=Path("../shared/data"), description="Copies of public datasets (tests, benchmarks)")
    dataset: str = Field(default="online-retail", description="Default dataset of the demo")
    candidate_family: CandidateFamily = Field(
        default="two_stage",
        description="Family the pipeline (the demo, the loop, a retrain) trains when none is given: the best on Online Retail by the standard protocol",
    )
    first_champion_family: CandidateFamily = Field(
        default="two_stage",
        description="Family `recsys up` trains when the registry has no champion (the best on Online Retail; `ials` answers in seconds)",
    )
    gx_engine: Literal["pandas", "spark"] = Field(
        default="pandas",
        description="Engine of the GX data gate: pandas (fastest on one machine) or spark (local Spark, needs Java 17)",
    )

    host: str = Field(default="127.0.0.1", description="Interface every local server binds")
    prefect_port: int = Field(default=4200, description="Prefect server (API and UI) port")
    mlflow_port: int = Field(default=5000, description="MLflow tracking server port")
    serve_port: int = Field(default=3000, description="BentoML service port (Swagger UI at /)")
    evidently_port: int = Field(default=8000, description="Evidently UI port")
    state_dir: Path | None = Field(
        default=None,
        description="Per-user record of the servers recsys started, under any home (default: $XDG_STATE_HOME/recsys or ~/.local/state/recsys)",
    )
    monitor_interval_minutes: float = Field(default=60.0, description="Schedule of the monitor and canary deployments served by `recsys up` (0: none)")

    mlflow_tracking_uri: str | None = Field(default=None, description="Default: sqlite database under home")
    # Production backends (docs/production.md): unset, everything stays in files under home.
    mlflow_backend_store_uri: str | None = Field(
        default=None,
        description="Database of the MLflow server, e.g. postgresql://user@db:5432/mlflow (default: sqlite under home)",
    )
    mlflow_artifacts_destination: str | None = Field(
        default=None,
        description="Where the MLflow server keeps artifacts, e.g. s3://bucket/mlflow (default: home/mlartifacts)",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, moto); unset means AWS S3. Credentials come from AWS_* env vars",
    )
    prefect_database_url: str | None = Field(
        default=None,
        description="Database of the Prefect server, e.g. postgresql+asyncpg://user@db:5432/prefect (default: SQLite)",
    )
    experiment: str = "recsys"
    registered_model: str = "recsys"
    champion_alias: str = "champion"
    shadow_alias: str = Field(default="shadow", description="MLflow alias (and BentoML model name suffix) of the challenger scored in the shadow")
    canary_alias: str = Field(default="canary", description="MLflow alias (and BentoML model name suffix) of the challenger serving the canary share")

    # Serving (read by the BentoML service's own process)
    bind_host: str = Field(default="127.0.0.1", description="Interface the service binds when started alone; beyond loopback needs RECSYS_ADMIN_TOKEN")
    serve_workers: int = Field(default=1, description="Service worker processes (a reload swaps the worker it reaches)")
    request_timeout_s: float = Field(default=5.0, description="Service time to first byte before a 504")
    # Measured at 64 closed-loop clients on one worker (2 busy cores): 16 answered as many requests
    # a second as 32 (which refused almost none and so queued); 8 halved them, refusals taking the CPU.
    serve_max_concurrency: int = Field(
        default=16,
        ge=0,
        description="Requests a service worker handles at once; past it, a 503 with Retry-After at once, not a queue (0: no bound)",
    )
    access_log: bool = Field(default=False, description="BentoML's access log lines (the request log has every answer)")
    tracing: bool = Field(default=False, description="BentoML's OpenTelemetry spans per request (for a configured exporter)")
    bento_model: str = Field(default="recsys:latest", description="BentoML model tag the service loads")
    log_key: SecretStr | None = Field(default=None, description="HMAC key (32+ bytes) pseudonymising user ids in logs; unset: generated into home/secrets")
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of the service's admin routes; unset: generated into home/secrets")
    audit_key: SecretStr | None = Field(
        default=None, description="HMAC key (32+ bytes) of erasure audit entries and tombstones; unset: generated into home/secrets"
    )

    # Training
    embedding_dim: int = 64
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 0.02
    seed: int = 42
    eval_max_users: int = Field(default=20_000, description="Above this many test users, metrics rank a fixed random sample of them")
    price_per_core_hour: float = Field(default=0.05, description="Example price of one CPU core-hour for cost estimates (use your own)")
    price_per_gpu_hour: float = Field(default=2.5, description="Example price of one GPU-hour for cost estimates (use your own)")
    cost_aware_blessing: bool = Field(default=False, description="Weigh cost in blessing: a much dearer candidate must also win by a margin")
    blessing_max_cost_factor: float = Field(default=2.0, description="Training or serving cost over the champion's above which the margin applies")
    blessing_min_gain: float = Field(default=0.05, description="Relative NDCG@10 gain over the champion that a much dearer candidate needs")

    # Monitoring
    drift_threshold: float = Field(default=0.5, description="Share of drifted columns that starts a retrain")
    window_size: int = Field(default=500, description="Requests per monitoring window")
    min_window: int = Field(default=100, description="Fewer requests than this never start a retrain")
    drift_consecutive: int = Field(default=2, description="Drifted windows in a row needed to retrain")
    retrain_cooldown_hours: float = Field(default=24.0, description="Traffic hours after a retrain with no other")
    max_retrains_per_day: int = Field(default=1, description="Cap on retrains in any 24 traffic hours")
    min_new_interactions: int = Field(default=500, description="New interactions needed to retrain")
    max_hit_rate_drop: float = Field(default=0.2, description="Relative fall of online hit rate that calls for a retrain")

    # Challengers on live traffic (recsys.serving.arms, recsys.monitoring.canary)
    promotion_mode: Literal["direct", "online"] = Field(
        default="direct", description="direct: an offline-blessed candidate becomes champion at once; online: through shadow and canary first"
    )
    shadow_share: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of requests the shadow scores (after answering, off their path; never shown)")
    shadow_queue: int = Field(
        default=1024, ge=1, description="Answers that may wait for the shadow per worker; past it their lines are logged without its list (counted)"
    )
    canary_share: float = Field(default=0.1, ge=0.0, le=1.0, description="Share of users (sticky, by pseudonym) the canary answers")
    canary_min_users: int = Field(default=30, ge=1, description="Users each arm needs in a window for that window to count")
    canary_windows: int = Field(default=2, ge=1, description="Counting windows a canary must serve before it can be promoted")
    canary_margin: float = Field(default=0.05, ge=0.0, lt=1.0, description="Relative online hit-rate loss against the champion still taken as not worse")
    canary_max_error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Canary-arm failure share above which it is rolled back at once (0: any)")
    canary_max_p99_ms: float = Field(default=50.0, gt=0.0, description="Canary search p99 latency (ms) in a window above which it is rolled back at once")

    @property
    def tracking_uri(self) -> str:
        """Where clients track: the configured URI (an MLflow server), else the server's own database."""
        return self.mlflow_tracking_uri or self.backend_store_uri

    @property
    def backend_store_uri(self) -> str:
        """The MLflow server's database: the configured one, else the sqlite file under home."""
        return self.mlflow_backend_store_uri or f"sqlite:///{self.mlflow_db.resolve()}"

    def challenger_model(self, alias: str) -> str:
        """BentoML model tag of a challenger (shadow, canary): the champion's name and `-<alias>`, newest.

        A name of its own, so the champion's `recsys:latest` never resolves to a challenger.
        """
        return f"{self.bento_model.split(':')[0]}-{alias}:latest"

    @property
    def mlflow_db(self) -> Path:
        """The embedded MLflow database file (used when no backend store is configured)."""
        return self.home / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def artifacts_destination(self) -> str:
        """Where MLflow artifacts go: the configured URI (s3://...), else the local folder."""
        return self.mlflow_artifacts_destination or self.artifacts_dir.resolve().as_uri()

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def request_log(self) -> Path:
        return self.home / "logs" / "requests.jsonl"

    @property
    def datasets_dir(self) -> Path:
        """Dataset stores (Parquet by month) of the named datasets, ingested on first use."""
        return self.home / "datasets"

    @property
    def gx_dir(self) -> Path:
        return self.home / "gx"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def evidently_workspace(self) -> Path:
        return self.home / "evidently"

    @property
    def events_log(self) -> Path:
        """Feedback and similar-item events, beside the request log (written by the service)."""
        return self.request_log.with_name("events.jsonl")

    @property
    def policy_history(self) -> Path:
        return self.home / "monitoring" / "history.json"

    @property
    def privacy_dir(self) -> Path:
        """Tombstones of forgotten users (keyed hashes only) and the lock that serialises erasures."""
        return self.home / "privacy"

    @property
    def audit_log(self) -> Path:
        """One JSON line per erasure, under the audit key's hash of the id (recsys.privacy)."""
        return self.home / "audit" / "erasures.jsonl"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def servers_dir(self) -> Path:
        """Where every started server is recorded: per user, outside any home (recsys.processes)."""
        state = self.state_dir or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "recsys"
        return state / "servers"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests clear the cache after changing env)."""
    return Settings()
