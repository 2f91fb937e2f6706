"""The one place that finds the checked-in data: avro_schemas/, pinot/, migrations/, dashboards/ and stack/.

Those folders live at the repository root. `pipeline/resources_data/` holds symlinks to them, so the same
package-relative path works in a checkout, in an editable install and in a normal install (which copies the
files into the package).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_DATA = Path(str(files("pipeline") / "resources_data"))

AVRO_SCHEMAS = _DATA / "avro_schemas"
PINOT = _DATA / "pinot"
MIGRATIONS = _DATA / "migrations"
STACK_RECIPES = _DATA / "stack"
DASHBOARDS = _DATA / "dashboards"
