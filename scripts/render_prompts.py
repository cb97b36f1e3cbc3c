#!/usr/bin/env python3
"""Render the IVR prompts from sounds/prompts.yaml to sounds/<lang>/<name>.wav.

Needs espeak-ng and sox (Debian: ``apt-get install -y espeak-ng sox``). The WAV files are
committed, so neither tool is needed to run or test the project. Output: 8 kHz, mono,
16-bit signed PCM (what Asterisk plays as ``dialer/<name>``), leading and trailing silence
trimmed, a short pad at the end.

    python scripts/render_prompts.py            # render what changed (manifest of text hashes)
    python scripts/render_prompts.py --all      # render everything
    python scripts/render_prompts.py --check    # exit 1 if a prompt is missing or stale
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from dialer.settings import load_settings
from dialer.yamlfile import load_mapping
from ivr.render import VOICES, bank_vars, fingerprint, render, text_of

ROOT = Path(__file__).resolve().parent.parent
SOUNDS = ROOT / "sounds"
SOURCE = SOUNDS / "prompts.yaml"
MANIFEST = SOUNDS / "manifest.json"


def load(path: Path = SOURCE) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The prompt texts, and the values of {bank} and {callback}: the settings' bank."""
    data = load_mapping(path)
    return data["prompts"], bank_vars(load_settings().bank)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--all", action="store_true", help="render every prompt")
    ap.add_argument(
        "--check", action="store_true", help="only check that all are present and current"
    )
    args = ap.parse_args(argv)

    prompts, vars_ = load()
    manifest: dict[str, str] = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    todo: list[tuple[str, str, str]] = []
    for name in sorted(prompts):
        for lang in VOICES:
            if lang not in prompts[name]:
                print(f"{name}: no {lang} text", file=sys.stderr)
                return 1
            text = text_of(prompts, vars_, name, lang)
            key = f"{lang}/{name}"
            wav = SOUNDS / lang / f"{name}.wav"
            if args.all or manifest.get(key) != fingerprint(text, lang) or not wav.exists():
                todo.append((name, lang, text))
    if args.check:
        for name, lang, _ in todo:
            print(f"stale or missing: {lang}/{name}", file=sys.stderr)
        return 1 if todo else 0
    if todo and not (shutil.which("espeak-ng") and shutil.which("sox")):
        print("espeak-ng and sox are needed: apt-get install -y espeak-ng sox", file=sys.stderr)
        return 1
    for name, lang, text in todo:
        render(text, lang, SOUNDS / lang / f"{name}.wav")
        manifest[f"{lang}/{name}"] = fingerprint(text, lang)
    # drop files for prompts that no longer exist
    for lang in VOICES:
        for wav in (SOUNDS / lang).glob("*.wav"):
            if wav.stem not in prompts:
                wav.unlink()
                manifest.pop(f"{lang}/{wav.stem}", None)
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    total = sum(p.stat().st_size for lang in VOICES for p in (SOUNDS / lang).glob("*.wav"))
    print(f"rendered {len(todo)} prompt(s); {total / 1e6:.2f} MB in sounds/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
