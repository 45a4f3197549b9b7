#!/usr/bin/env python3
"""A real SMTP server on loopback for council-digest's tests, built on aiosmtpd.

Started by tests/support/smtp.rs; not meant to be run by hand, though it can be:

    /usr/bin/python3 tests/support/smtp_server.py --mode accept --dir /tmp/inbox

It binds 127.0.0.1 on a free port, prints `PORT <n>` on stdout once it listens, and then
serves until killed. Every accepted message is saved as `<dir>/<seq>.eml` (the raw bytes of
DATA) with `<dir>/<seq>.json` beside it (envelope sender and recipients); both are written to a
temporary name and renamed, so a reader never sees half a file. Every DATA attempt, whatever
its outcome, is appended as one line to `<dir>/events.log`: `<outcome> <recipients>`; each
connection's end is logged there too, as `closed` with no recipients.

--idle-timeout SECONDS makes the server close a connection that has been idle that long (as real
servers do), which shows whether a client's pooled connection is replaced.

--tls-cert FILE --tls-key FILE (PEM) with --tls-mode serves TLS: `starttls` offers STARTTLS and
refuses MAIL until the client has used it; `implicit` speaks TLS from the first byte (as on port
465). Each connection's first HELO or EHLO is logged as `opened` with no recipients, so the log
shows how many SMTP sessions carried the messages (a bare TCP probe never gets that far, nor
does a client whose implicit TLS handshake failed).

Fault modes (--mode):
  accept                 250 for every message
  tempfail-first         451 on the first attempt of each message, then 250
  reject                 550 for every message
  drop-first             drop the connection after DATA, before replying, on the first attempt
                         of each message; then 250
  drop                   always drop the connection after DATA, before replying
  silent-first           go silent after DATA (never reply, keep the socket open) on the first
                         attempt of each message; then 250
  silent                 always go silent after DATA
  never-greet            accept TCP connections and never send the greeting

A message is identified by its envelope recipients and its Subject header, so that a retry of
the same delivery counts as the same message even if it was rendered again.
"""

import argparse
import asyncio
import email.parser
import json
import os
import socket
import ssl
import sys

TLS_MODES = ("starttls", "implicit")

MODES = (
    "accept",
    "tempfail-first",
    "reject",
    "drop-first",
    "drop",
    "silent-first",
    "silent",
    "never-greet",
)


class Inbox:
    def __init__(self, directory):
        self.directory = directory
        self.sequence = 0
        self.seen = set()

    def event(self, outcome, envelope):
        self.log_line("%s %s\n" % (outcome, ",".join(envelope.rcpt_tos)))

    def log_line(self, line):
        with open(os.path.join(self.directory, "events.log"), "a", encoding="utf-8") as log:
            log.write(line)
            log.flush()

    def first_attempt(self, envelope):
        """Whether this is the first time this message was offered."""
        headers = email.parser.BytesHeaderParser().parsebytes(envelope.original_content or b"")
        key = (tuple(sorted(envelope.rcpt_tos)), str(headers.get("Subject", "")))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def save(self, envelope):
        self.sequence += 1
        stem = os.path.join(self.directory, "%08d" % self.sequence)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        for suffix, data in ((".json", json.dumps(meta).encode()),
                             (".eml", envelope.original_content or b"")):
            temporary = stem + suffix + ".part"
            with open(temporary, "wb") as out:
                out.write(data)
            os.replace(temporary, stem + suffix)


class FaultyHandler:
    def __init__(self, mode, inbox):
        self.mode = mode
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):
        mode = self.mode
        first = self.inbox.first_attempt(envelope)
        if mode == "reject":
            self.inbox.event("rejected-550", envelope)
            return "550 5.7.1 Mailbox unavailable (test fault)"
        if mode == "tempfail-first" and first:
            self.inbox.event("deferred-451", envelope)
            return "451 4.3.0 Try again later (test fault)"
        if mode == "drop" or (mode == "drop-first" and first):
            self.inbox.event("dropped", envelope)
            server.transport.abort()
            raise ConnectionResetError("test fault: connection dropped during DATA")
        if mode == "silent" or (mode == "silent-first" and first):
            self.inbox.event("silent", envelope)
            await asyncio.Event().wait()
        self.inbox.save(envelope)
        self.inbox.event("accepted", envelope)
        return "250 2.0.0 OK: queued as %08d" % self.inbox.sequence


async def never_greet(reader, writer):
    # Hold the connection open and say nothing until the client gives up.
    await reader.read()
    writer.close()


def logging_smtp(handler, inbox, idle_timeout, starttls_context):
    from aiosmtpd.smtp import SMTP

    class LoggingSMTP(SMTP):
        greeted = False

        def note_session(self):
            if not self.greeted:
                self.greeted = True
                inbox.log_line("opened \n")

        async def smtp_HELO(self, hostname):
            self.note_session()
            await super().smtp_HELO(hostname)

        async def smtp_EHLO(self, hostname):
            self.note_session()
            await super().smtp_EHLO(hostname)

        def connection_lost(self, error):
            inbox.log_line("closed \n")
            super().connection_lost(error)

    return LoggingSMTP(handler, decode_data=False, hostname="smtp.test",
                       data_size_limit=64 * 1024 * 1024, timeout=idle_timeout,
                       tls_context=starttls_context,
                       require_starttls=starttls_context is not None)


def server_tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def serve(mode, directory, idle_timeout, tls_mode=None, tls_context=None):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    loop = asyncio.get_running_loop()
    implicit = tls_context if tls_mode == "implicit" else None
    starttls = tls_context if tls_mode == "starttls" else None
    if mode == "never-greet":
        server = await asyncio.start_server(never_greet, sock=listener, ssl=implicit)
    else:
        inbox = Inbox(directory)
        handler = FaultyHandler(mode, inbox)
        server = await loop.create_server(
            lambda: logging_smtp(handler, inbox, idle_timeout, starttls),
            sock=listener,
            ssl=implicit,
        )
    print("PORT %d" % listener.getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="accept")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    parser.add_argument("--tls-mode", choices=TLS_MODES)
    parser.add_argument("--tls-cert", help="PEM certificate chain of the server")
    parser.add_argument("--tls-key", help="PEM private key of the server")
    args = parser.parse_args()
    if bool(args.tls_mode) != bool(args.tls_cert) or bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-mode, --tls-cert and --tls-key go together")
    if args.mode != "never-greet":
        try:
            import aiosmtpd.smtp  # noqa: F401
        except ImportError:
            print("ERROR aiosmtpd is missing: apt-get install -y python3-aiosmtpd",
                  flush=True)
            sys.exit(2)
    os.makedirs(args.dir, exist_ok=True)
    tls_context = server_tls_context(args.tls_cert, args.tls_key) if args.tls_mode else None
    asyncio.run(serve(args.mode, args.dir, args.idle_timeout, args.tls_mode, tls_context))


if __name__ == "__main__":
    main()
