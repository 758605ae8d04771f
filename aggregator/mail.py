"""Mail out: the only smtplib user. Builds MIME messages (multipart/alternative: text + HTML) and
hands them to the configured SMTP server, mapping every failure to transient (retry later),
bounce (the server refused this address or message for good) or permanent (our configuration)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum

from aggregator.settings import Settings


class MailErrorKind(StrEnum):
    TRANSIENT = "transient"  # 4xx, timeouts, connection trouble: try again later
    BOUNCE = "bounce"  # 5xx for the recipient or the message: the address does not take it
    PERMANENT = "permanent"  # 5xx for the sender or the login: fix the configuration


class MailError(Exception):
    def __init__(self, kind: MailErrorKind, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code

    def __str__(self) -> str:
        prefix = f"{self.code} " if self.code else ""
        return f"{self.kind.value}: {prefix}{self.args[0]}"


@dataclass(frozen=True)
class Composed:
    """A message ready for compose_message: headers beyond the usual ones go in `headers`."""

    recipient: str
    subject: str
    text: str
    html: str
    message_id: str
    date: datetime
    headers: Mapping[str, str]


def sender_domain(mail_from: str) -> str:
    """The domain of the configured sender, for Message-IDs."""
    _, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "localhost"


def compose_message(composed: Composed, *, mail_from: str) -> EmailMessage:
    """multipart/alternative with the plain text first and the HTML last (preferred)."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = Address(addr_spec=composed.recipient)
    message["Subject"] = composed.subject
    message["Date"] = format_datetime(composed.date)
    message["Message-ID"] = composed.message_id
    for name, value in composed.headers.items():
        message[name] = value
    message.set_content(composed.text, subtype="plain", cte="quoted-printable")
    message.add_alternative(composed.html, subtype="html", cte="quoted-printable")
    return message


def send_message(message: EmailMessage, *, settings: Settings) -> None:
    """Deliver one message to the SMTP server; MailError when it was not accepted. Once the
    server has accepted the data, trouble while closing the connection is ignored."""
    try:
        client = _connect(settings)
    except (smtplib.SMTPException, OSError) as exc:
        raise classify(exc) from exc
    try:
        _login(client, settings)
        client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        _close(client)
        raise classify(exc) from exc
    _close(client)


def _connect(settings: Settings) -> smtplib.SMTP:
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout
    if settings.smtp_tls == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls_context(settings))
    if settings.smtp_tls == "none":
        return smtplib.SMTP(host, port, timeout=timeout)
    context = tls_context(settings)
    client = smtplib.SMTP(host, port, timeout=timeout)
    try:
        client.starttls(context=context)
    except BaseException:
        _close(client)
        raise
    return client


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context (certificate chain and host name): trusting the CAs of
    `smtp_ca_file`, or the system's trust store when it is empty."""
    try:
        return ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise MailError(
            MailErrorKind.PERMANENT, f"cannot load AGGREGATOR_SMTP_CA_FILE: {exc}"
        ) from exc


def _login(client: smtplib.SMTP, settings: Settings) -> None:
    if settings.smtp_user:
        client.login(settings.smtp_user, settings.smtp_password.get_secret_value())


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def classify(exc: BaseException) -> MailError:
    """What an SMTP failure means for the message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        return _by_code(code, _text(reply), bounce=True)
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, _text(exc.smtp_error), bounce=True)
    if isinstance(exc, smtplib.SMTPResponseException):  # sender refused, login, HELO
        return _by_code(exc.smtp_code, _text(exc.smtp_error), bounce=False)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailError(MailErrorKind.PERMANENT, f"server does not support it: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailError(MailErrorKind.PERMANENT, f"TLS certificate refused: {exc}")
    return MailError(MailErrorKind.TRANSIENT, f"{type(exc).__name__}: {exc}")


def _by_code(code: int, reply: str, *, bounce: bool) -> MailError:
    if 500 <= code < 600:
        kind = MailErrorKind.BOUNCE if bounce else MailErrorKind.PERMANENT
    else:
        kind = MailErrorKind.TRANSIENT
    return MailError(kind, reply or "no reply text", code)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
