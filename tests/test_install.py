"""An installed copy works on its own: ``pip install .`` (a wheel, not editable) into a fresh
virtual environment, then ``dialer demo`` from an empty folder. The defaults in ``config/`` and
the prompts in ``sounds/`` ship inside the package (setup.py's build step).

To keep the suite off the network, the fresh environment borrows this environment's installed
dependencies (a ``.pth`` line; ``.pth`` files inside that folder, such as an editable install of
this checkout, are not read) and gets the wheel with ``--no-deps``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "dialer",
    "ivr",
    "config",
    "sounds",
)


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_data", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheels")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)], src)
    (built,) = out.glob("bank_dialer-*.whl")
    return built


def test_the_wheel_ships_the_defaults_and_the_prompts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "dialer/_data/config/settings.yaml",
        "dialer/_data/config/demo/floor.yaml",
        "dialer/_data/config/asterisk/extensions.conf",
        "dialer/_data/config/flows/card_activation.yaml",
        "dialer/_data/sounds/prompts.yaml",
        "dialer/floor/console/static/index.html",
        "dialer/store/migrations/env.py",
    ):
        assert needed in names, needed
    assert any(n.startswith("dialer/_data/sounds/zh/") and n.endswith(".wav") for n in names)


@pytest.mark.slow
def test_installed_demo_runs_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    site = Path(
        run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).strip()
    )
    (site / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        tmp_path,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALER_", "IVR_", "PYTHON"))}
    where = run(
        [str(py), "-c", "import dialer; print(dialer.__file__); print(dialer.CONFIG_DIR)"],
        empty,
        env,
    )
    module_file, config_dir = where.split()
    assert Path(module_file).is_relative_to(venv) and Path(config_dir).is_relative_to(venv)
    out = run([str(venv / "bin" / "dialer"), "demo", "--json", "--contacts", "25"], empty, env, 240)
    doc = json.loads(out)
    assert doc["attempts"] >= 20 and doc["unfinished"] == 0
    assert list(empty.iterdir()) == []
