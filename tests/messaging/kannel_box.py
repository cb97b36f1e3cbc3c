"""A real Kannel for tests: bearerbox + smsbox + Kannel's fake SMSC, in a temporary folder.

Two fake SMSC links: ``fake`` carries our messages out to a long-running ``fakesmsc`` whose
log is the handset side (every message it got), and ``inbound`` is where a short-lived
``fakesmsc`` injects one customer reply at a time (Kannel's fake SMSC serves one client at a
time, so an injector leaves once its message is through). Ports are free ports on 127.0.0.1;
the configuration is rendered here; every process is stopped by its pid.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from dialer.messaging.kannel import KannelSettings, mo_url

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
SERVICE_NUMBER = "10690000"

_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (\S+) (.*)>$")


def available() -> bool:
    return all(os.access(p, os.X_OK) for p in (BEARERBOX, SMSBOX, FAKESMSC))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass(frozen=True)
class Handset:
    """One message as the fake SMSC received it."""

    sender: str
    to: str
    kind: str
    text: str


def _decode(kind: str, data: str) -> str:
    """fakesmsc's line: ``text <text>``, ``data|ucs-2 <url-encoded>`` or, for one part of a
    long message, ``udh <udh> data <url-encoded>`` (our long messages are UCS-2)."""
    if kind == "text":
        return data
    raw = urllib.parse.unquote_to_bytes(data.split(" ")[-1].replace("+", "%20"))
    return raw.decode("latin-1" if kind == "data" else "utf-16-be", "replace")


@dataclass
class KannelBox:
    folder: Path
    callback_base: str
    password: str
    throughput: float = 200.0
    status_password: str = "test-only-status"
    admin_port: int = field(default_factory=free_port)
    box_port: int = field(default_factory=free_port)
    mt_port: int = field(default_factory=free_port)
    mo_port: int = field(default_factory=free_port)
    sendsms_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf_path(self) -> Path:
        return self.folder / "kannel.conf"

    def settings(self, **over: object) -> KannelSettings:
        base = {
            "sendsms_url": f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms",
            "username": "dialer",
            "smsc_id": "fake",
            "sender": SERVICE_NUMBER,
            "rate": self.throughput,
            "request_timeout_s": 5.0,
            "callback_base": self.callback_base,
            "status_url": f"http://127.0.0.1:{self.admin_port}/status.xml",
        }
        return KannelSettings.model_validate({**base, **over})

    def render(self) -> str:
        f = self.folder
        return f"""group = core
admin-port = {self.admin_port}
admin-password = test-only-admin
status-password = {self.status_password}
admin-interface = 127.0.0.1
smsbox-port = {self.box_port}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = "{f}/bearerbox.log"
log-level = 1
store-type = file
store-location = "{f}/store"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {self.mt_port}
connect-allow-ip = 127.0.0.1
throughput = {self.throughput:g}
denied-smsc-id = inbound

group = smsc
smsc = fake
smsc-id = inbound
port = {self.mo_port}
connect-allow-ip = 127.0.0.1
allowed-smsc-id = inbound

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.box_port}
sendsms-port = {self.sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{f}/smsbox.log"
log-level = 1
mo-recode = true
http-request-retry = 5
http-queue-delay = 1

group = sendsms-user
username = dialer
password = {self.password}
max-messages = 10
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{mo_url(self.callback_base)}"
"""

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        out = open(self.folder / f"{name}.out", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True
        )
        out.close()
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        """bearerbox, then the handset side (fakesmsc), then smsbox; waits for each port."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.render(), encoding="utf-8")
        self._spawn("bearerbox", BEARERBOX, str(self.conf_path))
        wait_port(self.box_port)
        wait_port(self.mt_port)
        self._spawn(
            "handset",
            FAKESMSC,
            "-H",
            "127.0.0.1",
            "-r",
            str(self.mt_port),
            "-m",
            "0",
            "0 0 text unused",
        )
        self.start_smsbox()

    def start_smsbox(self) -> None:
        self._spawn("smsbox", SMSBOX, str(self.conf_path))
        wait_port(self.sendsms_port)

    def _end(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill_smsbox(self) -> None:
        """smsbox dies at once (SIGKILL): sendsms refuses connections until it is back."""
        self._end("smsbox", signal.SIGKILL)

    def stop_bearerbox(self) -> None:
        """The core goes down cleanly (its store is kept); smsbox and the SMSC link follow."""
        self._end("bearerbox", signal.SIGTERM, timeout=20)
        self._end("smsbox")
        self._end("handset", signal.SIGINT)

    def restart(self) -> None:
        self._spawn("bearerbox", BEARERBOX, str(self.conf_path))
        wait_port(self.box_port)
        wait_port(self.mt_port)
        self._spawn(
            "handset",
            FAKESMSC,
            "-H",
            "127.0.0.1",
            "-r",
            str(self.mt_port),
            "-m",
            "0",
            "0 0 text unused",
        )
        self.start_smsbox()

    def received(self) -> list[Handset]:
        """Every message the handset side got, in order (from every run of it)."""
        out: list[Handset] = []
        path = self.folder / "handset.out"
        if not path.exists():
            return out
        for line in path.read_text("utf-8", "replace").splitlines():
            m = _GOT.search(line)
            if m:
                sender, to, kind, data = m.groups()
                out.append(Handset(sender, to, kind, _decode(kind, data)))
        return out

    def reply(self, sender: str, text: str, *, timeout: float = 10.0) -> None:
        """A customer's reply enters Kannel through the inbound fake SMSC."""
        if text.isascii() and text.strip() == text and text:
            line = f"{sender} {SERVICE_NUMBER} text {text}"
        else:
            line = f"{sender} {SERVICE_NUMBER} ucs2 " + urllib.parse.quote(text.encode("utf-16-be"))
        proc = self._spawn(
            "injector",
            FAKESMSC,
            "-H",
            "127.0.0.1",
            "-r",
            str(self.mo_port),
            "-m",
            "1",
            "-i",
            "0",
            line,
        )
        # it has written its line once the log says so; then it may go
        log = self.folder / "injector.out"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None or "sent message 1" in log.read_text("utf-8", "replace"):
                break
            time.sleep(0.05)
        time.sleep(0.3)  # bearerbox reads the line before the client leaves
        self._end("injector", signal.SIGINT)
        log.rename(self.folder / f"injector-{time.monotonic_ns()}.out")

    def close(self) -> None:
        for name in ("injector", "smsbox", "handset"):
            self._end(name, signal.SIGINT if name != "smsbox" else signal.SIGTERM)
        self._end("bearerbox", signal.SIGTERM, timeout=20)
