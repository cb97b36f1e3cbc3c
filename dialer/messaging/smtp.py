"""The SMTP relay: the only module that talks SMTP out (aiosmtplib).

One connection is kept open and reused; it is opened with STARTTLS (the relay's certificate
checked against ``cafile`` or the system's CAs) and AUTH (user from settings, password from
``DIALER_SMTP_PASSWORD``). Each message goes as ``MAIL FROM`` (our VERP return path),
``RCPT TO``, ``DATA``; what an error means depends on where it happened:

- before ``DATA`` was sent (no connection, 4xx, a drop during MAIL/RCPT): nothing was taken,
  ``GatewayUnavailable``;
- ``RCPT`` refused with 5xx: the address is bad, ``RecipientRefused`` (flagged invalid);
- ``DATA`` refused with 5xx: ``MessageRejected``; with 4xx: ``GatewayUnavailable``;
- the connection dropped or timed out after the message's data went out: the relay may have
  queued it, ``GatewayInDoubt`` (never resent blindly).
"""

from __future__ import annotations

import ssl

import aiosmtplib

from dialer.messaging.email import MailSettings, Outgoing
from dialer.messaging.errors import (
    GatewayInDoubt,
    GatewayUnavailable,
    MessageRejected,
    RecipientRefused,
)


def tls_context(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


class MailSender:
    def __init__(self, cfg: MailSettings, password: str) -> None:
        self.cfg = cfg
        self._password = password
        self._smtp: aiosmtplib.SMTP | None = None

    @property
    def rate(self) -> float:
        return self.cfg.rate

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        smtp = aiosmtplib.SMTP(
            hostname=self.cfg.smtp_host,
            port=self.cfg.smtp_port,
            timeout=self.cfg.timeout_s,
            start_tls=self.cfg.starttls,
            tls_context=tls_context(self.cfg.cafile),
        )
        try:
            await smtp.connect()
            await smtp.login(self.cfg.smtp_username, self._password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            await self._quit(smtp)  # a server keeps the session open after a refused AUTH
            raise GatewayUnavailable(f"SMTP AUTH refused: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise GatewayUnavailable(
                f"SMTP {self.cfg.smtp_host}:{self.cfg.smtp_port}: {exc}"
            ) from exc
        self._smtp = smtp
        return smtp

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        """QUIT, so the server ends the session and the TLS transport closes at once."""
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def send(self, out: Outgoing) -> None:
        smtp = await self._connection()
        try:
            await smtp.mail(out.envelope_from)
            try:
                await smtp.rcpt(out.to)
            except aiosmtplib.SMTPRecipientRefused as exc:
                await smtp.rset()
                if 500 <= exc.code < 600:
                    raise RecipientRefused(f"RCPT {exc.code} {exc.message}") from exc
                raise GatewayUnavailable(f"RCPT {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            self._drop()
            raise GatewayUnavailable(f"SMTP before DATA: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._drop()
            raise GatewayUnavailable(f"SMTP {exc.code} {exc.message}") from exc
        try:
            await smtp.data(out.message.as_bytes())
        except aiosmtplib.SMTPDataError as exc:
            if 500 <= exc.code < 600:
                raise MessageRejected(f"DATA {exc.code} {exc.message}") from exc
            raise GatewayUnavailable(f"DATA {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            self._drop()
            raise GatewayInDoubt(f"SMTP during DATA: {exc}") from exc

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            try:
                await self._smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
        self._drop()


__all__ = ["MailSender", "tls_context"]
