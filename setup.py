"""Build hook: ship ``config/`` (defaults, sample campaigns, flows, scenarios, Asterisk files)
and ``sounds/`` inside the ``dialer`` package as ``dialer/_data/`` so that an installed copy
(``pip install .``, not editable) runs ``dialer demo`` from any folder. Everything else is in
setup.cfg."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("config", "sounds")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "dialer" / "_data"
        for name in SHIPPED:
            dest = target / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(HERE / name, dest, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithData})
