"""app_queue for the simulated PBX (part 2 fills in the behaviour)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.sim.engine import Channel, Engine

log = logging.getLogger(__name__)


@dataclass
class QueueConfig:
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    members: list[tuple[str, int, str, bool]] = field(
        default_factory=list
    )  # iface, penalty, name, paused


def parse_queues_conf(text: str, fname: str = "<queues.conf>") -> dict[str, QueueConfig]:
    templates: dict[str, QueueConfig] = {}
    queues: dict[str, QueueConfig] = {}
    cur: QueueConfig | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            end = line.index("]")
            name = line[1:end].strip()
            rest = line[end + 1 :].strip()
            is_template = False
            parents: list[str] = []
            if rest.startswith("(") and rest.endswith(")"):
                for p in rest[1:-1].split(","):
                    p = p.strip()
                    if p == "!":
                        is_template = True
                    elif p:
                        parents.append(p)
            cur = QueueConfig(name)
            for p in parents:
                if p not in templates:
                    raise ConfigError(f"line {lineno}: unknown template {p!r}", file=fname)
                cur.settings.update(templates[p].settings)
                cur.members.extend(templates[p].members)
            if name == "general":
                cur = None
                continue
            (templates if is_template else queues)[name] = cur
            if not is_template:
                templates.setdefault(name, cur)
            continue
        if cur is None:
            continue
        if "=" not in line:
            raise ConfigError(f"line {lineno}: cannot parse {line!r}", file=fname)
        k, v = line.split("=", 1)
        k = k.strip().rstrip(">").strip().lower()
        v = v.strip()
        if k == "member":
            parts = [p.strip() for p in v.split(",")]
            iface = parts[0]
            penalty = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            mname = parts[2] if len(parts) > 2 and parts[2] else iface
            paused = len(parts) > 6 and parts[6].lower() in ("yes", "1", "true")
            cur.members.append((iface, penalty, mname, paused))
        else:
            cur.settings[k] = v
    return queues


class QueueManager:
    def __init__(self, engine: Engine, configs: dict[str, QueueConfig]) -> None:
        self.engine = engine
        self.configs = configs

    @classmethod
    def load(cls, engine: Engine, path: Path) -> QueueManager:
        if not path.exists():
            raise ConfigError("file not found", file=str(path))
        return cls(engine, parse_queues_conf(path.read_text(encoding="utf-8"), str(path)))

    async def run_queue_app(self, ch: Channel, data: str) -> None:
        log.error("%s: Queue(%s) is not simulated yet; the call continues", ch.name, data)

    async def ami_action(self, name: str, s: Any, a: Any, base: Any) -> None:
        s.respond([("Response", "Error"), *base, ("Message", "Queue actions not simulated yet")])
