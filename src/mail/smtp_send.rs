//! One message over an open lettre connection: the MAIL, RCPT and DATA commands, then the
//! message with SMTP's transparency rule applied (RFC 5321 §4.5.2: a line that starts with `.`
//! gets a second one) and its terminating `.` line.
//!
//! lettre's own `AsyncSmtpConnection::send` applies the rule a byte at a time and writes the
//! terminator as a second packet. Sending digests, that loop was the largest single cost on
//! the sending threads, so the common case (an ASCII message to ASCII addresses: every message
//! this program builds, whose bodies are quoted-printable or base64) is sent here: the message
//! is scanned for line starts that hold a dot, copied in runs between them, and written with
//! its terminator at once, through the connection's public `command` call. Anything else
//! (8-bit text, internationalised addresses) goes through lettre's `send`, which negotiates
//! 8BITMIME and SMTPUTF8.

use std::fmt;

use lettre::address::Envelope;
use lettre::transport::smtp;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::response::Response;

/// Sends `message` to `envelope`'s recipients on `conn` and returns the server's reply to the
/// end of DATA. On an error the caller drops the connection.
pub(super) async fn send_message(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Response, smtp::Error> {
    let plain = envelope
        .from()
        .is_none_or(|from| AsRef::<str>::as_ref(from).is_ascii())
        && envelope
            .to()
            .iter()
            .all(|to| AsRef::<str>::as_ref(to).is_ascii());
    let text = match std::str::from_utf8(message) {
        Ok(text) if plain && text.is_ascii() => text,
        _ => return conn.send(envelope, message).await,
    };
    conn.command(Mail::new(envelope.from().cloned(), Vec::new()))
        .await?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
    }
    conn.command(Data).await?;
    conn.command(Transparent(text)).await
}

/// A message as it goes after DATA: dot-stuffed, then CRLF `.` CRLF. The rule is lettre's: a
/// dot is doubled at the very start and after each CRLF; a bare LF does not start a line.
struct Transparent<'a>(&'a str);

impl fmt::Display for Transparent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        let mut from = 0;
        for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n.") {
            // Up to and including the dot, then the dot again. The pattern is ASCII, so `end`
            // falls between characters.
            let end = at + 3;
            f.write_str(&text[from..end])?;
            f.write_str(".")?;
            from = end;
        }
        f.write_str(&text[from..])?;
        f.write_str("\r\n.\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::Transparent;

    fn stuffed(message: &str) -> String {
        Transparent(message).to_string()
    }

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_terminator_follows() {
        assert_eq!(
            stuffed("Subject: x\r\n\r\nhello"),
            "Subject: x\r\n\r\nhello\r\n.\r\n"
        );
        assert_eq!(stuffed(".\r\n"), "..\r\n\r\n.\r\n");
        assert_eq!(stuffed("a\r\n.b\r\n..c"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(stuffed("a\r\n.\r\n.\r\n"), "a\r\n..\r\n..\r\n\r\n.\r\n");
        assert_eq!(stuffed("\r\n."), "\r\n..\r\n.\r\n");
        assert_eq!(stuffed(""), "\r\n.\r\n");
    }

    #[test]
    fn dots_after_a_bare_line_feed_or_carriage_return_or_inside_a_line_are_kept() {
        assert_eq!(stuffed("a\n.b"), "a\n.b\r\n.\r\n");
        assert_eq!(stuffed("a\r.b"), "a\r.b\r\n.\r\n");
        assert_eq!(stuffed("a.b\r\nc. d"), "a.b\r\nc. d\r\n.\r\n");
        assert_eq!(stuffed("a\r\r\n.b"), "a\r\r\n..b\r\n.\r\n");
    }
}
