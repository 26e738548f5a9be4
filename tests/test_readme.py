"""The README's two set-up commands exist, and .ci/run runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_cmd = next(b.strip() for b in blocks if "pytest" in b)
    demo_cmd = next(b.strip() for b in blocks if "deepaudit demo" in b)
    assert demo_cmd.startswith("python3 -m venv .venv")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
