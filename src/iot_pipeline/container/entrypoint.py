"""Container entry point: put the mounted secrets into the environment, then exec the command.

    python -m iot_pipeline.container.entrypoint <command> [args...]

An environment value may reference secrets as `{secret:<name>}` (compose:
`SEARCH_PASSWORD: "{secret:elastic_password}"`, or inside a URL). Each reference is
replaced by the content of `/run/secrets/<name>` (`SECRETS_DIR` to change the folder). A
missing, empty, placeholder or short secret stops the container with exit status 78 and a
line saying which secret and what to run: a service never starts with a default password.

Airflow's simple auth manager keeps its users' passwords in a JSON file it must be able to
write: when `AIRFLOW_ADMIN_PASSWORD` is set (from its secret), that file
(`AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE`) is written with the `admin` password
and the variable is dropped from the command's environment.

The command then replaces this process (same PID, signals reach it directly).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from iot_pipeline.container.secrets import AIRFLOW_ADMIN, SecretError, read_secret

REFERENCE = re.compile(r"\{secret:([a-z0-9_]+)\}")
EX_CONFIG = 78


def resolve(environ: Mapping[str, str], folder: Path) -> dict[str, str]:
    """`environ` with every `{secret:name}` replaced; SecretError lists every problem."""
    resolved = dict(environ)
    problems: list[str] = []
    cache: dict[str, str] = {}

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in cache:
            try:
                cache[name] = read_secret(folder, name)
            except SecretError as exc:
                problems.append(str(exc))
                cache[name] = ""
        return cache[name]

    for key, value in environ.items():
        if "{secret:" in value:
            resolved[key] = REFERENCE.sub(value_of, value)
    if problems:
        raise SecretError("; ".join(dict.fromkeys(problems)))
    return resolved


def write_airflow_passwords(env: dict[str, str]) -> None:
    """Materialise the Airflow admin password for the simple auth manager (see above)."""
    password = env.pop("AIRFLOW_ADMIN_PASSWORD", None)
    target = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    if password is None or not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({AIRFLOW_ADMIN: password}, handle)


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print("usage: python -m iot_pipeline.container.entrypoint <command> [args...]")
        return 2
    try:
        env = resolve(os.environ, Path(os.environ.get("SECRETS_DIR", "/run/secrets")))
        write_airflow_passwords(env)
    except SecretError as exc:
        print(f"entrypoint: refusing to start {command[0]}: {exc}", file=sys.stderr, flush=True)
        return EX_CONFIG
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 (exec, no shell: intended)
    except OSError as exc:
        print(f"entrypoint: cannot run {command[0]}: {exc}", file=sys.stderr, flush=True)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
