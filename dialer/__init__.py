"""Outbound contact-centre server for banks: predictive dialer and IVR driving Asterisk."""

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE_DIR = Path(__file__).resolve().parent
#: Where ``config/`` and ``sounds/`` are: inside the installed package (``dialer/_data``, put
#: there by setup.py's build step), else the checkout that holds this package.
PROJECT_ROOT = (
    _PACKAGE_DIR / "_data" if (_PACKAGE_DIR / "_data" / "config").is_dir() else _PACKAGE_DIR.parent
)
CONFIG_DIR = PROJECT_ROOT / "config"
SOUNDS_DIR = PROJECT_ROOT / "sounds"
