"""Where prompts live on disk, and which ones a flow can name.

Prompt ``<name>`` ships as ``sounds/<lang>/<name>.wav``; Asterisk plays it as
``dialer/<name>`` (installed under ``<astsounds>/<lang>/dialer/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from dialer import SOUNDS_DIR
from ivr.flow import Flow
from ivr.say import LANGS, vocabulary


def sounds_dir() -> Path:
    env = os.environ.get("IVR_SOUNDS")
    if env:
        return Path(env)
    return SOUNDS_DIR if SOUNDS_DIR.is_dir() else Path.cwd() / "sounds"


def available(lang: str, root: Path | None = None) -> set[str]:
    return {p.stem for p in ((root or sounds_dir()) / lang).glob("*.wav")}


def needed(flow: Flow) -> set[str]:
    """Fixed prompts of the flow plus every word a spoken value can use."""
    return flow.prompt_names() | vocabulary()


def missing_prompts(flow: Flow, root: Path | None = None) -> list[str]:
    out: list[str] = []
    for lang in LANGS:
        have = available(lang, root)
        out += [f"{lang}/{n}" for n in sorted(needed(flow) - have)]
    return out
