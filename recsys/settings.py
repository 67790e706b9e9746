"""One settings object for the whole project: defaults < `.env`-style file < environment.

Every path derives from `home` (default `.recsys/` in the working directory), so one
variable moves all local state. Nothing here creates folders or touches servers at import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.monitoring.policy import PolicyConfig


class Settings(BaseSettings):
    """All settings; each can be set as `RECSYS_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".recsys"), description="Folder for all local state")
    shared_data_dir: Path = Field(
        default=Path("../shared/data"), description="Copies of public datasets (tests, benchmarks)"
    )
    dataset: str = Field(default="online-retail", description="Default dataset of the demo")

    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    serve_port: int = 3000

    mlflow_tracking_uri: str | None = Field(
        default=None, description="Default: sqlite database under home"
    )
    experiment: str = "recsys"
    registered_model: str = "recsys"
    champion_alias: str = "champion"

    # Training
    embedding_dim: int = 64
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 0.02
    seed: int = 42

    # Monitoring
    drift_threshold: float = Field(
        default=0.5, description="Share of drifted columns that starts a retrain"
    )
    window_size: int = Field(default=500, description="Requests per monitoring window")
    min_window: int = Field(default=100, description="Fewer requests than this never start a retrain")
    drift_consecutive: int = Field(default=2, description="Drifted windows in a row needed to retrain")
    retrain_cooldown_hours: float = Field(default=24.0, description="Traffic hours after a retrain with no other")
    max_retrains_per_day: int = Field(default=1, description="Cap on retrains in any 24 traffic hours")
    min_new_interactions: int = Field(default=500, description="New interactions needed to retrain")
    max_hit_rate_drop: float = Field(default=0.2, description="Relative fall of online hit rate that calls for a retrain")

    def policy(self) -> PolicyConfig:
        """The retrain guardrails (recsys.monitoring.policy) from these settings."""
        return PolicyConfig(
            threshold=self.drift_threshold,
            min_window=self.min_window,
            consecutive=self.drift_consecutive,
            cooldown_hours=self.retrain_cooldown_hours,
            max_retrains_per_day=self.max_retrains_per_day,
            min_new_interactions=self.min_new_interactions,
            max_hit_rate_drop=self.max_hit_rate_drop,
        )

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def request_log(self) -> Path:
        return self.home / "logs" / "requests.jsonl"

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
    def run_dir(self) -> Path:
        return self.home / "run"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests clear the cache after changing env)."""
    return Settings()
