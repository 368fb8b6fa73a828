"""The container deployment's secrets: generated once on the host, read from /run/secrets.

`make secrets` writes one file per secret into `secrets/` (git-ignored, directory mode 0700);
compose mounts each file at `/run/secrets/<name>` in the services that declare it. Nothing in
the repository holds a secret: a fresh clone has no `secrets/` and `docker compose up`
refuses to start until `make secrets` has run.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from iot_pipeline.errors import ConfigurationError

PLACEHOLDERS = frozenset({"changeme", "changethis", "password", "admin", "secret", "airflow"})
MIN_LENGTH = 16
AIRFLOW_ADMIN = "admin"


def _token() -> str:
    return secrets.token_urlsafe(32)


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Secret:
    name: str
    purpose: str
    make: Callable[[], str] = _token


SECRETS: tuple[Secret, ...] = (
    Secret("elastic_password", "password of the Elasticsearch superuser (setup job only)"),
    Secret("search_writer_password", "password of the search user `iot_writer` (worker, Airflow)"),
    Secret("search_reader_password", "password of the search user `iot_reader` (read only)"),
    Secret("search_api_password", "password of the search user `iot_api` (REST API)"),
    Secret("postgres_password", "password of Airflow's metadata database"),
    Secret("airflow_fernet_key", "Airflow Fernet key (encrypts connections)", _fernet_key),
    Secret("airflow_jwt_secret", "signs Airflow's API tokens"),
    Secret("airflow_api_secret_key", "Airflow API server session key"),
    Secret("airflow_admin_password", f"Airflow web UI password of `{AIRFLOW_ADMIN}`"),
    Secret("api_key", "REST API key (`X-API-Key`)"),
    Secret("flower_password", f"Flower basic-auth password of `{AIRFLOW_ADMIN}` (profile)"),
)
NAMES = frozenset(s.name for s in SECRETS)


class SecretError(ConfigurationError):
    """A secret is missing or unfit; the message says which and what to run."""


def check_value(name: str, value: str) -> str:
    """The secret's value, or SecretError if it is empty, a placeholder or too short."""
    value = value.strip()
    if not value:
        raise SecretError(f"secret {name} is empty: run `make secrets` on the host")
    lowered = value.lower()
    if lowered in PLACEHOLDERS or "changeme" in lowered or "placeholder" in lowered:
        raise SecretError(f"secret {name} is a placeholder: run `make secrets` for a real one")
    if len(value) < MIN_LENGTH:
        raise SecretError(f"secret {name} has {len(value)} characters; {MIN_LENGTH} at least")
    return value


def read_secret(folder: Path, name: str) -> str:
    path = folder / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(
            f"secret {name} not found at {path}: run `make secrets` on the host, and list "
            f"{name} under the service's `secrets:` in docker-compose.yml"
        ) from None
    return check_value(name, text)


def generate(folder: Path) -> dict[str, str]:
    """Create the missing secrets (existing ones are kept); returns name -> created|kept."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    outcome: dict[str, str] = {}
    for secret in SECRETS:
        path = folder / secret.name
        if path.exists():
            check_value(secret.name, path.read_text(encoding="utf-8"))
            outcome[secret.name] = "kept"
            continue
        # Readable by the containers' own users (a bind-mounted file keeps its mode);
        # the 0700 directory keeps other users of the host out.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secret.make())
        outcome[secret.name] = "created"
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Secrets of the container deployment.")
    parser.add_argument("command", choices=["generate", "check"])
    parser.add_argument("--dir", type=Path, default=Path("secrets"), help="default: secrets/")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            for name, state in generate(args.dir).items():
                print(f"secret {name}: {state}")
            print(f"secrets in {args.dir.resolve()} (git-ignored); compose mounts them")
        else:
            for secret in SECRETS:
                read_secret(args.dir, secret.name)
            print(f"secrets: all {len(SECRETS)} present in {args.dir}")
    except SecretError as exc:
        print(f"secrets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
