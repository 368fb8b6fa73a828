"""Fetch the browser assets the API serves itself (web/assets.json), idempotently.

    python scripts/vendor_assets.py [--pins FILE] [--dest DIR]

Each package is an npm tarball pinned by version and sha512 integrity. It is downloaded from
$NPM_REGISTRY (default https://registry.npmjs.org), refused unless its digest matches the pin,
and only the listed files are copied into DEST/<package>/ (default
src/iot_pipeline/api/static/vendor). A stamp per package skips what is already in place.
Standard library only: the container build runs it too, without Node.js.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "web" / "assets.json"
DEST = ROOT / "src" / "iot_pipeline" / "api" / "static" / "vendor"


def _tarball_url(registry: str, name: str, version: str) -> str:
    base = name.rsplit("/", 1)[-1]  # scoped packages: @scope/pkg -> pkg-<version>.tgz
    return f"{registry.rstrip('/')}/{name}/-/{base}-{version}.tgz"


def _digest(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def vendor(package: dict[str, object], dest: Path, registry: str) -> str:
    name, version = str(package["name"]), str(package["version"])
    folder = dest / name
    stamp = folder / ".vendored"
    want = f"{name}@{version} {package['integrity']}"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return f"{name} {version}: up to date"
    url = _tarball_url(registry, name, version)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https registry)
            data = response.read()
    except OSError as exc:
        raise SystemExit(f"cannot download {url}: {exc} (is the npm registry reachable?)") from exc
    if _digest(data) != package["integrity"]:
        raise SystemExit(f"{url}: integrity mismatch (expected {package['integrity']}); refused")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for wanted in package["files"]:  # type: ignore[attr-defined]
            member = tar.getmember(f"package/{wanted}")
            source = tar.extractfile(member)
            if source is None:
                raise SystemExit(f"{name}: {wanted} is not a file in the tarball")
            target = folder / Path(str(wanted)).name
            target.write_bytes(source.read())
    stamp.write_text(want + "\n")
    return f"{name} {version}: vendored {len(package['files'])} files"  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=Path, default=PINS)
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args(argv)
    registry = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org")
    pins = json.loads(args.pins.read_text())
    for package in pins["packages"]:
        print(f"[setup] web assets: {vendor(package, args.dest, registry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
