"""Run `python -m iot_pipeline.stack up|down|status|is-up`."""

import sys

from iot_pipeline.stack.cli import main

sys.exit(main())
