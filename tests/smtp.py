"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it accepts, and can be told to
refuse a recipient or answer the next DATA commands with given replies. It can also speak
STARTTLS or implicit TLS with a certificate made at test time (trustme) and require a login."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Mailbox:
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> RCPT reply
    data_replies: list[str] = field(default_factory=list)  # replies to the next DATA commands
    users: Mapping[str, str] = field(default_factory=dict)  # login -> password
    tls_versions: list[str | None] = field(default_factory=list)  # per accepted message
    logins: list[str | None] = field(default_factory=list)  # per accepted message
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        known = (
            isinstance(auth_data, LoginPassword)
            and self.users.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        if not known:  # handled=False: aiosmtpd answers 535 itself
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            content = envelope.content.replace(b"\r\n", b"\n")
            message = message_from_bytes(content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
            self.recipients.append(list(envelope.rcpt_tos))
            tls = server.transport.get_extra_info("ssl_object")
            self.tls_versions.append(tls.version() if tls is not None else None)
            login = session.auth_data
            self.logins.append(login.login.decode() if isinstance(login, LoginPassword) else None)
        return "250 2.0.0 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(
    *,
    tls: Literal["none", "starttls", "ssl"] = "none",
    certificate: trustme.LeafCert | None = None,
    users: Mapping[str, str] | None = None,
) -> Iterator[Mailbox]:
    """The server on a free port. With `users`, mail is taken only after a login (AUTH is
    offered only inside TLS when `tls` is "starttls"); `certificate` is the TLS identity."""
    mailbox = Mailbox(port=free_port(), users=dict(users or {}))
    options: dict[str, Any] = {}
    if users:
        options |= {"authenticator": mailbox.authenticate, "auth_required": True}
        # aiosmtpd only knows of TLS it negotiated itself (STARTTLS), not of implicit TLS
        options["auth_require_tls"] = tls != "ssl"
    if tls != "none":
        assert certificate is not None, "TLS needs a certificate"
        context = _server_context(certificate)
        options |= {"ssl_context": context} if tls == "ssl" else {"tls_context": context}
        options["require_starttls"] = tls == "starttls"
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port, **options)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


def _server_context(certificate: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return context
