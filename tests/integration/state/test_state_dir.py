"""``edge run`` with a state directory it cannot use: exit 78 (no restart loop), the path named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.line.test_line_service import line_toml


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_an_unusable_state_directory_exits_78_naming_it(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be", encoding="utf-8")
    state_dir = blocker / "state" if where == "under-a-file" else blocker
    path = tmp_path / "line.toml"
    path.write_text(
        line_toml(5020).replace('state_dir = "state"', f'state_dir = "{state_dir}"'),
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 78, run.stderr
    assert f"state directory {state_dir}" in run.stderr
    assert "not starting" in run.stderr
