"""One settings object read from the environment; every TASKLOOM_* variable is listed here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = ".taskloom"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    backend: str
    executor: str | None
    server_url: str | None
    api_token: str | None
    secret_key: str | None
    home: Path

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        home = Path(env.get("TASKLOOM_HOME") or Path.cwd() / DEFAULT_DIR)
        return cls(
            database_url=env.get("TASKLOOM_DATABASE_URL") or f"sqlite:///{home / 'taskloom.db'}",
            backend=(env.get("TASKLOOM_BACKEND") or "local").strip().lower(),
            executor=env.get("TASKLOOM_EXECUTOR") or None,
            server_url=env.get("TASKLOOM_SERVER_URL") or None,
            api_token=env.get("TASKLOOM_API_TOKEN") or None,
            secret_key=env.get("TASKLOOM_SECRET_KEY") or None,
            home=home,
        )
