"""A real Asterisk 22 for tests: built once per machine, started per test with its own folders.

The instance loads the project's own ``config/asterisk/`` files unchanged (``extensions.conf``
with its ``#include extensions_dialer.conf``, ``queues.conf``, ``manager.conf``), plus a
test-only dialplan of called parties and agents (``parties.conf``: Local channels) and test
queues that inherit the project's ``[agent-queue](!)`` template. The only values added to the
project's files are what an operator adds at deploy time: the AMI port and the ``dialer``
user's secret (``[general](+)`` / ``[dialer](+)`` after an ``#include``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_CONF = ROOT / "config" / "asterisk"
HERE = Path(__file__).resolve().parent
#: ../shared/asterisk/src beside the clone (a git worktree one level deeper also finds it)
TARBALL_DIRS = [
    Path(os.environ["DIALER_ASTERISK_SRC"]) if os.environ.get("DIALER_ASTERISK_SRC") else None,
    ROOT.parent / "shared" / "asterisk" / "src",
    ROOT.parent.parent / "shared" / "asterisk" / "src",
]
PEER_MODULES = HERE / "asterisk" / "modules.conf"
STOCK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
STOCK_MOH = Path("/usr/share/asterisk/moh")
SECRET = "real-switch-test-secret"


class NoAsterisk(Exception):
    """No tarball to build from (the only case where real-switch tests may skip)."""


def tarball() -> Path | None:
    for d in TARBALL_DIRS:
        if d is not None and d.is_dir():
            found = sorted(d.glob("asterisk-*.tar.xz"))
            if found:
                return found[0]
    return None


def build() -> Path:
    """The cached install prefix, building it first if needed (scripts/build_asterisk.sh)."""
    tb = tarball()
    if tb is None:
        raise NoAsterisk("no Asterisk tarball in ../shared/asterisk/src")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_asterisk.sh"), str(tb)],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Asterisk:
    """One Asterisk process in the foreground, every directory under ``workdir``."""

    def __init__(
        self,
        prefix: Path,
        workdir: Path,
        *,
        parties: str,
        queues: str,
        ami_port: int | None = None,
        sounds: Path | None = None,
    ) -> None:
        self.prefix = prefix
        self.dir = workdir
        self.ami_port = ami_port or free_port()
        self.secret = SECRET
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0
        self._write_config(parties, queues, sounds)

    # --- configuration -------------------------------------------------------------------

    def _write_config(self, parties: str, queues: str, sounds: Path | None) -> None:
        etc = self.dir / "etc"
        data = self.dir / "data"
        for sub in ("etc", "data", "varlib", "spool", "run", "log", "agi", "cache", "db", "keys"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "spool" / "outgoing").mkdir(exist_ok=True)
        dirs = {
            "astcachedir": "cache",
            "astetcdir": "etc",
            "astvarlibdir": "varlib",
            "astdbdir": "db",
            "astkeydir": "keys",
            "astdatadir": "data",
            "astagidir": "agi",
            "astspooldir": "spool",
            "astrundir": "run",
            "astlogdir": "log",
        }
        lines = ["[directories]"]
        lines += [f"{k} => {self.dir / v}" for k, v in dirs.items()]
        lines += [
            f"astmoddir => {self.prefix / 'lib' / 'asterisk' / 'modules'}",
            f"astsbindir => {self.prefix / 'sbin'}",
            "[options]",
            "verbose = 3",
            "nocolor = yes",
            "transmit_silence = yes",
            "documentation_language = en_US",
        ]
        self.conf = etc / "asterisk.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        # the project's files, unchanged, under their own names
        for f in PROJECT_CONF.glob("*.conf"):
            shutil.copy(f, etc / f.name)
        (etc / "extensions.conf").unlink()
        shutil.copy(PROJECT_CONF / "extensions.conf", etc / "project-extensions.conf")
        (etc / "extensions.conf").write_text(
            '#include "project-extensions.conf"\n#include "parties.conf"\n'
        )
        (etc / "parties.conf").write_text(parties)
        shutil.copy(PROJECT_CONF / "queues.conf", etc / "project-queues.conf")
        (etc / "queues.conf").write_text('#include "project-queues.conf"\n' + queues)
        shutil.copy(PROJECT_CONF / "manager.conf", etc / "project-manager.conf")
        (etc / "manager.conf").write_text(
            '#include "project-manager.conf"\n'
            f"[general](+)\nport = {self.ami_port}\n"
            f"[dialer](+)\nsecret = {self.secret}\n"
        )
        shutil.copy(PEER_MODULES, etc / "modules.conf")
        samples = self.prefix / "share" / "samples"
        for name in ("amd.conf", "indications.conf", "musiconhold.conf"):
            shutil.copy(samples / f"{name}.sample", etc / name)
        (etc / "logger.conf").write_text(
            "[general]\n[logfiles]\nmessages => notice,warning,error,verbose(3)\n"
        )
        docs = data / "documentation"
        if not docs.exists():  # Stasis refuses to start without the XML documentation
            docs.symlink_to(self.prefix / "var" / "lib" / "asterisk" / "documentation")
        snd = data / "sounds"
        snd.mkdir(parents=True, exist_ok=True)
        if STOCK_SOUNDS.is_dir() and not (snd / "en").exists():
            (snd / "en").symlink_to(STOCK_SOUNDS)
        if STOCK_MOH.is_dir() and not (data / "moh").exists():
            (data / "moh").symlink_to(STOCK_MOH)
        self._install_prompts(snd, sounds or ROOT / "sounds")

    @staticmethod
    def _install_prompts(astsounds: Path, src: Path) -> None:
        """Our prompts as <astsounds>/<lang>/dialer/<name>.wav (what `ivr install-sounds`
        does). ``en`` is the stock sounds' link, so English prompts go to en-dialer first."""
        for lang_dir in sorted(p for p in src.iterdir() if p.is_dir()):
            lang = lang_dir.name
            target = astsounds / lang
            if target.is_symlink():  # stock sounds: overlay a real folder holding both
                stock = target.resolve()
                target.unlink()
                target.mkdir()
                for item in stock.iterdir():
                    (target / item.name).symlink_to(item)
            dest = target / "dialer"
            dest.mkdir(parents=True, exist_ok=True)
            for wav in lang_dir.glob("*.wav"):
                shutil.copy(wav, dest / wav.name)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        console = self.dir / "log" / "console.log"
        self._log_from = console.stat().st_size if console.exists() else 0  # this boot only
        log = console.open("ab")
        self.proc = subprocess.Popen(
            [str(self.prefix / "sbin" / "asterisk"), "-f", "-n", "-C", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asterisk exited {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.ami_port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"Asterisk Call Manager"):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"asterisk AMI not up in {timeout}s: {self.tail()}")
        # wait until the dialplan and queues are loaded (fully booted)
        while time.monotonic() < deadline:
            if "fully booted" in self.cli("core waitfullybooted").lower() or self._booted():
                return
            time.sleep(0.1)

    def _booted(self) -> bool:
        with (self.dir / "log" / "console.log").open("rb") as fh:
            fh.seek(self._log_from)
            return b"Asterisk Ready" in fh.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, command: str, timeout: float = 10.0) -> str:
        out = subprocess.run(
            [str(self.prefix / "sbin" / "asterisk"), "-C", str(self.conf), "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return out.stdout + out.stderr

    def tail(self, n: int = 40) -> str:
        path = self.dir / "log" / "console.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
