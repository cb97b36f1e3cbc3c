"""Outbound contact-centre server for banks: predictive dialer and IVR driving Asterisk."""

from pathlib import Path

__version__ = "0.1.0"

#: The project's root (the checkout that holds ``config/`` and ``sounds/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"
SOUNDS_DIR = PROJECT_ROOT / "sounds"
