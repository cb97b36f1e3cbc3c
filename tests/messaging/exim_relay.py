"""The bank's mail server in the tests: a real Exim (Debian ``exim4-daemon-light``) as its own
process on a free loopback port, with its own configuration, spool and logs in a temporary
folder (``exim4 -C <file> -bdf``: no system service, no port 25).

What it does, as a bank's server would: STARTTLS (a test CA's certificate), AUTH PLAIN/LOGIN
offered only under TLS, and relaying only for an authenticated client; mail for the bank's
domain (our ``bounce+``, ``reply+`` and ``unsubscribe+`` addresses) goes by SMTP to our
endpoint (aiosmtpd, the product's part), checked at RCPT by a callout; a recipient in
``refuse`` is refused at RCPT (550 5.1.1); one in ``bounce`` is accepted and then fails, so
Exim itself sends the DSN
(RFC 3464) to the envelope sender, as when the next hop refuses (here Exim hands it to itself
and refuses it unauthenticated); every other message lands in the Maildir ``maildir``
(the customers' mailboxes).
"""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

EXIM = "exim4"
EXIM_USER = "Debian-exim"  # made by the Debian package

CONFIG = """\
primary_hostname = relay.test
qualify_domain = relay.test
spool_directory = @FOLDER@/spool
log_file_path = @FOLDER@/log/%slog
pid_file_path = @FOLDER@/exim.pid
local_interfaces = 127.0.0.1
daemon_smtp_ports = @PORT@
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts = *
tls_certificate = @FOLDER@/cert.pem
tls_privatekey = @FOLDER@/key.pem
domainlist bank_domains = @DOMAIN@
acl_smtp_rcpt = acl_rcpt

begin acl
acl_rcpt:
  deny    recipients = @REFUSE@
          message = 5.1.1 <$local_part@$domain>: Recipient address rejected: User unknown
  # the customer's server for a bounce address: it refuses what Exim itself hands on
  deny    recipients = @BOUNCE@
          !authenticated = *
          message = 5.1.1 <$local_part@$domain>: Recipient address rejected: User unknown
  accept  domains = +bank_domains
          verify = recipient/callout=10s,defer_ok
  accept  authenticated = *
  deny    message = 5.7.1 relaying needs authentication

begin routers
to_the_bank:
  driver = manualroute
  domains = +bank_domains
  transport = remote_smtp
  route_list = * 127.0.0.1::@ENDPOINT@
  self = send
gone:
  driver = manualroute
  condition = ${if match_address{$local_part@$domain}{@BOUNCE@}}
  transport = remote_smtp
  route_list = * 127.0.0.1::@PORT@
  self = send
mailboxes:
  driver = accept
  transport = maildir

begin transports
remote_smtp:
  driver = smtp
  hosts_avoid_tls = *
maildir:
  driver = appendfile
  directory = @FOLDER@/maildir
  maildir_format
  create_directory
  user = @EXIM_USER@
  return_path_add
  envelope_to_add

begin retry
* * F,1m,2s

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_advertise_condition = ${if def:tls_in_cipher}
  server_condition = ${if and {{eq{$auth2}{@USER@}}{eq{$auth3}{${readfile{@FOLDER@/password}}}}}}
  server_set_id = $auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_advertise_condition = ${if def:tls_in_cipher}
  server_prompts = Username:: : Password::
  server_condition = ${if and {{eq{$auth1}{@USER@}}{eq{$auth2}{${readfile{@FOLDER@/password}}}}}}
  server_set_id = $auth1
"""


def available() -> bool:
    return shutil.which(EXIM) is not None


def _exim_user() -> tuple[int, int]:
    entry = pwd.getpwnam(EXIM_USER)
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EximRelay:
    """Exim on a free port; ``kept()`` are the messages in the customers' mailboxes."""

    user = "dialer"
    password = "test-only-smtp-password"

    def __init__(
        self,
        folder: Path,
        *,
        domain: str,
        endpoint_port: int,
        refuse: list[str],
        bounce: list[str],
    ) -> None:
        import trustme

        # Exim gives up root for a configuration named by -C and runs as its own user, which
        # cannot enter a test's tmp_path (0700): its folder is one of its own under /tmp
        del folder
        folder = Path(tempfile.mkdtemp(prefix="dialer-exim-"))
        folder.chmod(0o755)
        for sub in ("spool", "log"):
            (folder / sub).mkdir()
        mailbox.Maildir(str(folder / "maildir"), create=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.cafile = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        cert.private_key_pem.write_to_path(str(folder / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
        (folder / "password").write_text(self.password)  # no newline: readfile compares it all
        self.folder = folder
        self.maildir = folder / "maildir"
        self.port = _free_port()
        conf = folder / "exim.conf"
        values = {
            "FOLDER": str(folder),
            "PORT": str(self.port),
            "DOMAIN": domain,
            "ENDPOINT": str(endpoint_port),
            "REFUSE": " : ".join(refuse) or "!*",
            "BOUNCE": " : ".join(bounce) or "!*",
            "USER": self.user,
            "EXIM_USER": EXIM_USER,
        }
        text = CONFIG
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        conf.write_text(text)
        conf.chmod(0o644)
        uid, gid = _exim_user()
        for path in folder.rglob("*"):
            if path != conf:  # Exim wants its configuration owned by root
                os.chown(path, uid, gid)
        # -bdf: the daemon in the foreground (its pid is ours to stop); -q2s: retry deferrals
        self.proc = subprocess.Popen(
            [EXIM, "-C", str(conf), "-bdf", "-q2s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                why = f"{err.strip()} {self.log('panic')}"
                self.stop()
                raise RuntimeError(f"exim did not start: {why}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(200).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"exim did not listen on {self.port}: {self.log('main')}")

    def log(self, which: str = "main") -> str:
        path = self.folder / "log" / f"{which}log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kept(self) -> list[bytes]:
        if not self.maildir.exists():
            return []
        return [m.as_bytes() for m in mailbox.Maildir(str(self.maildir), create=False)]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.folder, ignore_errors=True)
