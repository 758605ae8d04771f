"""aggregator.mail against a real SMTP server on 127.0.0.1: what arrives, how each failure is
classified, and STARTTLS / implicit TLS with a login against a certificate made at test time
(verified with AGGREGATOR_SMTP_CA_FILE, refused without it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
import trustme
from pydantic import SecretStr

from aggregator.mail import Composed, MailError, MailErrorKind, compose_message, send_message
from aggregator.settings import Settings
from tests.smtp import Mailbox, free_port, smtp_server

NOW = datetime(2025, 12, 4, 7, 0, tzinfo=UTC)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as server:
        yield server


def _settings(tmp_path: Path, port: int, **extra: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_timeout": 5,
        "mail_from": "Digest <digest@news.example>",
        "secret_key": SecretStr("s"),
    }
    return Settings(_env_file=None, **(values | extra))  # type: ignore[arg-type]  # validated


def _message(recipient: str = "reader@example.org") -> Composed:
    return Composed(
        recipient=recipient,
        subject="Grüße: the day's news",
        text="Plain words, über alles.\n",
        html="<p>HTML words</p>\n",
        message_id="<digest.20251204.1.abc@news.example>",
        date=NOW,
        headers={"List-Unsubscribe": "<https://news.example/unsubscribe?token=t>"},
    )


def test_a_message_arrives_whole(tmp_path: Path, mailbox: Mailbox) -> None:
    settings = _settings(tmp_path, mailbox.port)
    send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    (received,) = mailbox.messages
    assert mailbox.recipients == [["reader@example.org"]]
    assert received["From"] == "Digest <digest@news.example>"
    assert received["Subject"] == "Grüße: the day's news"
    assert received["Message-ID"] == "<digest.20251204.1.abc@news.example>"
    assert received["List-Unsubscribe"] == "<https://news.example/unsubscribe?token=t>"
    assert received.get_content_type() == "multipart/alternative"
    plain, html = received.iter_parts()
    assert plain.get_content() == "Plain words, über alles.\n"
    assert html.get_content() == "<p>HTML words</p>\n"


@pytest.mark.parametrize(
    ("reply", "kind", "code"),
    [
        ("550 5.1.1 No such user", MailErrorKind.BOUNCE, 550),
        ("452 4.2.2 Mailbox full, try later", MailErrorKind.TRANSIENT, 452),
    ],
)
def test_refused_recipients_are_classified(
    tmp_path: Path, mailbox: Mailbox, reply: str, kind: MailErrorKind, code: int
) -> None:
    mailbox.refuse["gone@example.org"] = reply
    settings = _settings(tmp_path, mailbox.port)
    message = compose_message(_message("gone@example.org"), mail_from=settings.mail_from)
    with pytest.raises(MailError) as caught:
        send_message(message, settings=settings)
    assert (caught.value.kind, caught.value.code) == (kind, code)
    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("554 5.7.1 Message rejected as spam", MailErrorKind.BOUNCE),
        ("451 4.3.0 Temporary local problem", MailErrorKind.TRANSIENT),
    ],
)
def test_refused_data_is_classified(
    tmp_path: Path, mailbox: Mailbox, reply: str, kind: MailErrorKind
) -> None:
    mailbox.data_replies.append(reply)
    settings = _settings(tmp_path, mailbox.port)
    with pytest.raises(MailError) as caught:
        send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    assert caught.value.kind is kind


def test_no_server_is_transient(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    with pytest.raises(MailError) as caught:
        send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    assert caught.value.kind is MailErrorKind.TRANSIENT


def test_starttls_refused_by_the_server_is_permanent(tmp_path: Path, mailbox: Mailbox) -> None:
    """The test server offers no STARTTLS: asking for it is a configuration error, and the
    message is never sent in clear."""
    settings = _settings(tmp_path, mailbox.port, smtp_tls="starttls")
    with pytest.raises(MailError) as caught:
        send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    assert caught.value.kind is MailErrorKind.PERMANENT
    assert mailbox.messages == []


def test_login_without_auth_support_is_permanent(tmp_path: Path, mailbox: Mailbox) -> None:
    settings = _settings(tmp_path, mailbox.port, smtp_user="u", smtp_password=SecretStr("p"))
    with pytest.raises(MailError) as caught:
        send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    assert caught.value.kind is MailErrorKind.PERMANENT
    assert mailbox.messages == []


def test_a_server_that_never_answers_times_out_as_transient(tmp_path: Path) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        settings = _settings(tmp_path, silent.getsockname()[1], smtp_timeout=0.5)
        with pytest.raises(MailError) as caught:
            send_message(
                compose_message(_message(), mail_from=settings.mail_from), settings=settings
            )
        assert caught.value.kind is MailErrorKind.TRANSIENT
    finally:
        silent.close()


# ---------------------------------------------------------------- TLS and login, for real

USERS = {"digest-sender": "s3cret pass"}
TLS = Literal["starttls", "ssl"]
# aiosmtpd cannot tell that an implicit-TLS connection is encrypted, and warns of AUTH in clear
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def _env_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str | int) -> Settings:
    """Settings read from AGGREGATOR_* variables, as a deployment sets them."""
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)
    values = {"data_dir": tmp_path, "smtp_host": "127.0.0.1", "smtp_timeout": 5} | env
    for name, value in values.items():
        monkeypatch.setenv(f"AGGREGATOR_{name.upper()}", str(value))
    return Settings(_env_file=None)


def _trusting(authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "smtp-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_mail_arrives_over_verified_tls_after_a_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, authority: trustme.CA, tls: TLS
) -> None:
    certificate = authority.issue_cert("127.0.0.1")
    with smtp_server(tls=tls, certificate=certificate, users=USERS) as server:
        settings = _env_settings(
            monkeypatch,
            tmp_path,
            smtp_port=server.port,
            smtp_tls=tls,
            smtp_user="digest-sender",
            smtp_password="s3cret pass",
            smtp_ca_file=_trusting(authority, tmp_path),
            mail_from="Digest <digest@news.example>",
        )
        send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    (received,) = server.messages
    assert received["Message-ID"] == "<digest.20251204.1.abc@news.example>"
    assert server.recipients == [["reader@example.org"]]
    assert server.logins == ["digest-sender"]  # the server takes no mail without one
    (version,) = server.tls_versions
    assert version is not None and version.startswith("TLSv1")


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_a_certificate_that_is_not_trusted_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, authority: trustme.CA, tls: TLS
) -> None:
    """Nothing trusts the test CA (the system store is used): no login, no mail, and a
    configuration error rather than a retry."""
    certificate = authority.issue_cert("127.0.0.1")
    with smtp_server(tls=tls, certificate=certificate, users=USERS) as server:
        settings = _env_settings(
            monkeypatch,
            tmp_path,
            smtp_port=server.port,
            smtp_tls=tls,
            smtp_user="digest-sender",
            smtp_password="s3cret pass",
        )
        with pytest.raises(MailError) as caught:
            send_message(compose_message(_message(), mail_from="d@news.example"), settings=settings)
    assert caught.value.kind is MailErrorKind.PERMANENT
    assert "certificate" in str(caught.value)
    assert server.messages == []


def test_a_certificate_for_another_host_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, authority: trustme.CA
) -> None:
    """A trusted CA is not enough: the certificate must name the server we connect to."""
    certificate = authority.issue_cert("mail.elsewhere.example")
    with smtp_server(tls="starttls", certificate=certificate) as server:
        settings = _env_settings(
            monkeypatch,
            tmp_path,
            smtp_port=server.port,
            smtp_tls="starttls",
            smtp_ca_file=_trusting(authority, tmp_path),
        )
        with pytest.raises(MailError) as caught:
            send_message(compose_message(_message(), mail_from="d@news.example"), settings=settings)
    assert caught.value.kind is MailErrorKind.PERMANENT
    assert server.messages == []


def test_a_wrong_password_is_permanent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, authority: trustme.CA
) -> None:
    certificate = authority.issue_cert("127.0.0.1")
    with smtp_server(tls="starttls", certificate=certificate, users=USERS) as server:
        settings = _env_settings(
            monkeypatch,
            tmp_path,
            smtp_port=server.port,
            smtp_tls="starttls",
            smtp_user="digest-sender",
            smtp_password="guess",
            smtp_ca_file=_trusting(authority, tmp_path),
        )
        with pytest.raises(MailError) as caught:
            send_message(compose_message(_message(), mail_from="d@news.example"), settings=settings)
    assert (caught.value.kind, caught.value.code) == (MailErrorKind.PERMANENT, 535)
    assert server.messages == []


def test_without_a_login_the_server_takes_no_mail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, authority: trustme.CA
) -> None:
    certificate = authority.issue_cert("127.0.0.1")
    with smtp_server(tls="starttls", certificate=certificate, users=USERS) as server:
        settings = _env_settings(
            monkeypatch,
            tmp_path,
            smtp_port=server.port,
            smtp_tls="starttls",
            smtp_ca_file=_trusting(authority, tmp_path),
        )
        with pytest.raises(MailError) as caught:
            send_message(compose_message(_message(), mail_from="d@news.example"), settings=settings)
    assert (caught.value.kind, caught.value.code) == (MailErrorKind.PERMANENT, 530)
    assert server.messages == []


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path: Path, mailbox: Mailbox) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    settings = _settings(tmp_path, mailbox.port, smtp_tls="starttls", smtp_ca_file=missing)
    with pytest.raises(MailError) as caught:
        send_message(compose_message(_message(), mail_from=settings.mail_from), settings=settings)
    assert caught.value.kind is MailErrorKind.PERMANENT
    assert "AGGREGATOR_SMTP_CA_FILE" in str(caught.value)
