"""`python -m iot_pipeline.container.search_users [--wait S]`: least-privilege search logins.

The container deployment's one-shot setup job, the only process that logs in as the
Elasticsearch superuser `elastic`. It creates (or updates) three roles on the pipeline's
indices (`<SEARCH_INDEX_PREFIX>-*`) and one user for each:

- `iot_writer` (worker, Airflow tasks): create, write, read, refresh, map and delete the
  prefix's indices (retention deletes whole indices) and manage index templates;
- `iot_api` (REST API): read the prefix's indices, and write exactly the two indices its
  write routes write: operators' overrides (`/qc/overrides`) and sensor declarations
  (`PUT /sensors/{id}/metadata`);
- `iot_reader` (read-only tools): read the prefix's indices and the cluster's health.

Their passwords come from SEARCH_WRITER_PASSWORD, SEARCH_API_PASSWORD and
SEARCH_READER_PASSWORD (secrets). With OpenSearch (docker-compose.opensearch.yml runs it
without its security plugin) there is no user to create and the job says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iot_pipeline.errors import ConfigurationError
from iot_pipeline.settings import Settings

WRITER = "iot_writer"
API = "iot_api"
READER = "iot_reader"
READ = ("read", "view_index_metadata")
# the indices the API's write routes write (indices.overrides_index, sensor_metadata_index)
API_WRITES = ("qc-overrides", "sensor-metadata")


@dataclass(frozen=True)
class Login:
    """A role and the user that has it: index privileges per index pattern (suffixes of
    `<prefix>-`)."""

    user: str
    password_variable: str
    cluster: tuple[str, ...]
    indices: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    description: str

    def role_body(self, prefix: str) -> dict[str, Any]:
        return {
            "description": self.description,
            "cluster": list(self.cluster),
            "indices": [
                {"names": [f"{prefix}-{suffix}" for suffix in names], "privileges": list(grant)}
                for names, grant in self.indices
            ],
        }

    def may(self, privilege: str, index: str, prefix: str) -> bool:
        """Whether the role grants `privilege` on `index` (a concrete name)."""
        from fnmatch import fnmatchcase

        return any(
            privilege in grant and any(fnmatchcase(index, f"{prefix}-{s}") for s in names)
            for names, grant in self.indices
        )


LOGINS = (
    Login(
        WRITER,
        "SEARCH_WRITER_PASSWORD",
        ("monitor", "manage_index_templates"),
        ((("*",), ("create_index", "write", *READ, "manage", "delete_index")),),
        "worker and Airflow tasks: index readings and windows, apply templates, retention",
    ),
    Login(
        API,
        "SEARCH_API_PASSWORD",
        ("monitor",),
        (
            (("*",), READ),
            (tuple(f"{name}*" for name in API_WRITES), ("create_index", "write", *READ)),
        ),
        "REST API: read readings and windows; write operators' overrides and declarations",
    ),
    Login(
        READER,
        "SEARCH_READER_PASSWORD",
        ("monitor",),
        ((("*",), READ),),
        "read-only tools: read readings and windows",
    ),
)


# The same roles in OpenSearch's security plugin: its action groups for Elasticsearch's
# privileges (bulk, mget and msearch are cluster-level actions there).
OPENSEARCH_CLUSTER = {
    "monitor": ("cluster_monitor", "cluster_composite_ops_ro"),
    "manage_index_templates": ("cluster_manage_index_templates", "cluster_composite_ops"),
}
OPENSEARCH_INDEX = {
    "read": ("read",),
    "view_index_metadata": (
        "indices:admin/mappings/get",
        "indices:admin/get",
        "indices:admin/resolve/index",
        "indices:monitor/settings/get",
    ),
    "write": ("write", "indices:data/write/bulk*"),
    "create_index": ("create_index",),
    "manage": ("manage",),
    "delete_index": ("indices:admin/delete",),
}


def opensearch_role(login: Login, prefix: str) -> dict[str, Any]:
    """The login's role as OpenSearch's security plugin takes it (its REST API's body)."""
    cluster = {group for name in login.cluster for group in OPENSEARCH_CLUSTER[name]}
    if any("write" in grant for _, grant in login.indices):
        cluster.add("cluster_composite_ops")  # bulk requests
    return {
        "description": login.description,
        "cluster_permissions": sorted(cluster),
        "index_permissions": [
            {
                "index_patterns": [f"{prefix}-{suffix}" for suffix in names],
                "allowed_actions": sorted({a for g in grant for a in OPENSEARCH_INDEX[g]}),
            }
            for names, grant in login.indices
        ],
    }


def apply_opensearch(client: Any, prefix: str, passwords: dict[str, str]) -> list[str]:
    """Create or update every role, user and mapping through OpenSearch's security API (as
    its admin); returns what was done, one line each."""
    api = "/_plugins/_security/api"
    done = []
    for login in LOGINS:
        client.transport.perform_request(
            "PUT", f"{api}/roles/{login.user}", body=opensearch_role(login, prefix)
        )
        client.transport.perform_request(
            "PUT", f"{api}/internalusers/{login.user}", body={"password": passwords[login.user]}
        )
        client.transport.perform_request(
            "PUT", f"{api}/rolesmapping/{login.user}", body={"users": [login.user]}
        )
        done.append(f"{login.user}: OpenSearch role on {prefix}-*")
    return done


class SetupError(ConfigurationError):
    """The logins cannot be created; the message says why."""


def _passwords(settings: Settings) -> dict[str, str]:
    from iot_pipeline.container.secrets import check_value

    given = {
        WRITER: settings.search_writer_password,
        API: settings.search_api_password,
        READER: settings.search_reader_password,
    }
    return {
        login.user: check_value(login.password_variable, given[login.user].get_secret_value())
        for login in LOGINS
    }


def apply(client: Any, prefix: str, passwords: dict[str, str]) -> list[str]:
    """Create or update every role and user; returns what was done, one line each."""
    done = []
    for login in LOGINS:
        client.security.put_role(name=login.user, **login.role_body(prefix))
        client.security.put_user(
            username=login.user, password=passwords[login.user], roles=[login.user]
        )
        grants = "; ".join(
            f"{', '.join(f'{prefix}-{n}' for n in names)}: {', '.join(grant)}"
            for names, grant in login.indices
        )
        done.append(f"{login.user}: {grants}")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the pipeline's search logins.")
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the engine")
    args = parser.parse_args(argv)
    settings = Settings()
    if settings.search_engine != "elasticsearch":
        print(f"search users: {settings.search_engine} runs without security here; nothing to do")
        return 0
    if settings.search_username != "elastic":
        print("search users: this job logs in as `elastic` (SEARCH_USERNAME)", file=sys.stderr)
        return 2
    from iot_pipeline.container.secrets import SecretError

    try:
        passwords = _passwords(settings)
    except SecretError as exc:
        print(f"search users: {exc}", file=sys.stderr)
        return 2
    from elasticsearch import ApiError, Elasticsearch, TransportError

    client = Elasticsearch(
        settings.search_url,
        basic_auth=(settings.search_username, settings.search_password.get_secret_value()),
        request_timeout=30,
    )
    deadline = time.monotonic() + args.wait
    try:
        while True:
            try:
                for line in apply(client, settings.search_index_prefix, passwords):
                    print(f"search users: {line}")
                return 0
            except (TransportError, ApiError) as exc:
                retryable = isinstance(exc, TransportError) or getattr(exc, "status_code", 0) >= 500
                if not retryable or time.monotonic() >= deadline:
                    print(f"search users: failed: {exc}", file=sys.stderr)
                    return 1
                print(f"search users: waiting for {settings.search_url} ({exc})", file=sys.stderr)
                time.sleep(2.0)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
