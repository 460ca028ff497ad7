"""The SMTP server of the mail tests: aiosmtpd (Debian python3-aiosmtpd), a
maintained SMTP implementation, started by tests/support/smtp.rs.

    smtp_server.py DIR PORT MODE [CERT KEY]

MODE is `plain` (no TLS), `starttls` (offers STARTTLS, does not require it)
or `tls` (implicit TLS from the first byte, as on port 465). CERT and KEY are
PEM files of the server certificate (a test CA made at test time signed it).

Any AUTH PLAIN/LOGIN is accepted and recorded, also without TLS, so a test
can check which password the client decrypted. Every accepted message is
written to DIR/messages/NNNNNN.json (via a temp file and rename, so a reader
never sees half of one): envelope, login, TLS version, raw DATA, and subject
and body decoded by Python's email package. DIR/connections gets one line
per client session. While DIR/refuse exists every MAIL FROM is answered 451.

Prints `READY <port>` once listening; exits when stdin reaches EOF (the test
process is gone) or on a signal.
"""

import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOSTNAME = "mysqk-test-smtp"


def tls_version(server):
    transport = server.transport
    obj = transport.get_extra_info("ssl_object") if transport else None
    return obj.version() if obj else None


class Handler:
    def __init__(self, directory):
        self.dir = directory
        self.messages = os.path.join(directory, "messages")
        os.makedirs(self.messages, exist_ok=True)
        self.count = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if os.path.exists(os.path.join(self.dir, "refuse")):
            return "451 4.3.0 test server refuses mail for now"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_DATA(self, server, session, envelope):
        auth = getattr(session, "mysqk_auth", None)
        # Python's email package undoes the MIME encodings (RFC 2047 words,
        # quoted-printable, base64, charset) for the tests.
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = msg.get_content() if not msg.is_multipart() else ""
        record = {
            "helo": session.host_name or "",
            "mail_from": envelope.mail_from or "",
            "rcpt_to": list(envelope.rcpt_tos),
            "auth": list(auth) if auth else None,
            "tls": tls_version(server),
            "data": envelope.original_content.decode("utf-8", "replace"),
            "subject": str(msg.get("Subject", "")),
            "body": body.replace("\r\n", "\n"),
        }
        self.count += 1
        name = "%06d.json" % self.count
        tmp = os.path.join(self.messages, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.messages, name))
        return "250 2.0.0 OK queued"


class CountingSMTP(SMTP):
    """Appends a line to DIR/connections per client session. Called again
    after STARTTLS (then `transport` is already set: not a new client); with
    implicit TLS only after the handshake, so a client that rejects the
    certificate is not counted."""

    def connection_made(self, transport):
        if self.transport is None:
            with open(os.path.join(self.event_handler.dir, "connections"), "a") as f:
                f.write("connection\n")
        super().connection_made(transport)


def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword):
        session.mysqk_auth = (
            auth_data.login.decode("utf-8", "replace"),
            auth_data.password.decode("utf-8", "replace"),
        )
    return AuthResult(success=True)


def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def main():
    directory, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ctx = context(sys.argv[4], sys.argv[5]) if mode != "plain" else None
    handler = Handler(directory)
    loop = asyncio.get_running_loop()

    def protocol():
        return CountingSMTP(
            handler,
            hostname=HOSTNAME,
            tls_context=ctx if mode == "starttls" else None,
            authenticator=authenticator,
            auth_require_tls=False,
            timeout=60,
            loop=loop,
        )

    server = await loop.create_server(
        protocol, "127.0.0.1", port, ssl=ctx if mode == "tls" else None
    )
    stop = loop.create_future()

    def on_stdin():
        if not os.read(sys.stdin.fileno(), 4096) and not stop.done():
            stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    print("READY %d" % server.sockets[0].getsockname()[1], flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
