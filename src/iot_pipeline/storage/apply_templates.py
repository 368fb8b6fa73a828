"""`python -m iot_pipeline.storage.apply_templates [--wait S]`: create or update the templates.

The worker applies them as well when it starts; this command is the container deployment's
one-shot job, so the API and the first batch never meet an engine without mappings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from iot_pipeline.errors import TransientStoreError
from iot_pipeline.settings import Settings
from iot_pipeline.storage import load_templates, make_store


def main(argv: Sequence[str] | None = None) -> int:
    """Apply the index templates, waiting up to `--wait` seconds for the engine."""
    parser = argparse.ArgumentParser(description="Create or update the index templates.")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the engine")
    args = parser.parse_args(argv)
    settings = Settings()
    templates = load_templates(settings.search_templates_dir, settings.search_index_prefix)
    store = make_store(settings)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            store.ensure_templates(templates)
            break
        except TransientStoreError as exc:
            if time.monotonic() >= deadline:
                print(f"templates: {settings.search_url} unreachable: {exc}", file=sys.stderr)
                return 1
            print(f"templates: waiting for {settings.search_url} ({exc})", file=sys.stderr)
            time.sleep(2.0)
    print(f"templates: applied {', '.join(sorted(templates))} on {settings.search_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
