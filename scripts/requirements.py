"""Print the pinned requirements of the package plus the given extras, one per line.

Used by the Dockerfiles to install dependencies in a layer of their own (it changes only
with pyproject.toml), before the sources are copied:
    python requirements.py worker api > requirements.txt
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as handle:
    project = tomllib.load(handle)["project"]
extras = project["optional-dependencies"]
unknown = [name for name in sys.argv[1:] if name not in extras]
if unknown:
    sys.exit(f"requirements.py: unknown extra {unknown}; known: {sorted(extras)}")
lines = list(project["dependencies"])
for name in sys.argv[1:]:
    lines += extras[name]
print("\n".join(dict.fromkeys(lines)))
