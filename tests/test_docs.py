"""The README stays true: its configuration table is the settings the code declares."""

import re
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import settings_table  # noqa: E402


def test_readme_configuration_table_matches_the_code():
    assert settings_table.readme_table((ROOT / "README.md").read_text()) == settings_table.render_table(), (
        "README.md's configuration table is out of date: run `.venv/bin/python tools/settings_table.py --write`"
    )


def test_environment_is_read_only_through_settings():
    offenders = []
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in {".venv", "node_modules", "tests", "bench", "tools"}:
            continue
        if path.name == "settings.py" or path.name.endswith("_settings.py"):
            continue
        # Passing the whole environment on to a child process (**os.environ) is fine; reading one is not.
        if re.search(r"os\.environ(\.get|\[)|os\.getenv", path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"read these through a Setting in a settings module: {offenders}"
