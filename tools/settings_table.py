"""The README's configuration table, generated from the settings every process declares.

`python tools/settings_table.py` prints it; `--write` replaces the table in README.md.
tests/test_docs.py fails when the README and the code disagree.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.settings import REGISTRY  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
# Every module that declares settings; a process's settings live in its own module.
SETTINGS_MODULES = [
    "fleet.settings",
    "broker.settings",
    "simulator.settings",
    "dashboard.settings",
    "dashboard.replicas_settings",
    "matcher.settings",
    "zones.settings",
]


def load_settings() -> None:
    for name in SETTINGS_MODULES:
        importlib.import_module(name)


def show_default(value: object) -> str:
    if value is None or value == "" or value == ():
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        try:
            return str(value.relative_to(ROOT))
        except ValueError:
            return str(value)
    return str(value)


def render_table() -> str:
    load_settings()
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for setting in sorted(REGISTRY.values(), key=lambda s: s.name):
        meaning = setting.help.replace("|", "\\|")
        rows.append(f"| `{setting.name}` | `{show_default(setting.default)}` | {meaning} |")
    return "\n".join(rows)


def readme_table(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip()


def write_readme() -> None:
    text = README.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    README.write_text(text[:start] + "\n" + render_table() + "\n" + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_readme()
    else:
        print(render_table())
