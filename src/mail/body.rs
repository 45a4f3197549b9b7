//! Message bodies in their transfer encoding, made cheaply for many recipients.
//!
//! lettre encodes each body it is given: it turns bare LFs into CRLFs by inserting each CR in
//! place (which moves the rest of the text once per line) and then encodes the whole body as
//! quoted-printable when it is not plain short-lined ASCII. For a weekly digest sent to
//! thousands of recipients that differ only in their links, that work dominates rendering.
//!
//! Two things here avoid it without changing a byte of the result:
//! - [`crlf_line_endings`] ends every line with CRLF in one pass before lettre sees the text.
//! - [`SplicedBody`] keeps a shared rendering's quoted-printable encoding line by line.
//!   Quoted-printable encodes each line on its own (a hard line break resets the line length
//!   and ends trailing-space handling), so the lines without a stand-in for a link are encoded
//!   once, and only the few lines with one are filled in and encoded for each recipient, by
//!   the same encoder lettre uses. Whoever builds one checks it against lettre's own encoding
//!   of a real recipient's body before using it.

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// `text` with every line ended by CRLF, as a message body's lines must be. A text that has no
/// bare LF is returned as it is.
pub fn crlf_line_endings(text: String) -> String {
    let bytes = text.as_bytes();
    let bare = count_bare_lf(bytes);
    if bare == 0 {
        return text;
    }
    let mut out = String::with_capacity(text.len() + bare);
    for line in text.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(rest) if !rest.ends_with('\r') => {
                out.push_str(rest);
                out.push_str("\r\n");
            }
            _ => out.push_str(line),
        }
    }
    out
}

fn count_bare_lf(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        .count()
}

/// A quoted-printable body for many recipients: runs of lines encoded once, and the lines that
/// hold a stand-in, kept as text to be filled in for each recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplicedBody {
    pieces: Vec<Piece>,
    bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Lines already encoded, joined by CRLF.
    Encoded(String),
    /// One line (without its line break) holding a stand-in.
    Fill(String),
}

impl SplicedBody {
    /// Splits `text` (CRLF line endings) into lines, encoding those for which `has_stand_in`
    /// is false.
    pub fn new(text: &str, has_stand_in: impl Fn(&str) -> bool) -> SplicedBody {
        let mut pieces: Vec<Piece> = Vec::new();
        for line in text.split("\r\n") {
            if has_stand_in(line) {
                pieces.push(Piece::Fill(line.to_owned()));
                continue;
            }
            let encoded = quoted_printable::encode_to_str(line);
            match pieces.last_mut() {
                Some(Piece::Encoded(run)) => {
                    run.push_str("\r\n");
                    run.push_str(&encoded);
                }
                _ => pieces.push(Piece::Encoded(encoded)),
            }
        }
        let bytes = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Encoded(text) | Piece::Fill(text) => text.len() + 2,
            })
            .sum();
        SplicedBody { pieces, bytes }
    }

    /// The body for one recipient: each stand-in line filled in by `fill` and encoded.
    pub fn body(&self, fill: impl Fn(&str) -> String) -> Body {
        let mut out = String::with_capacity(self.bytes + 256);
        for (n, piece) in self.pieces.iter().enumerate() {
            if n > 0 {
                out.push_str("\r\n");
            }
            match piece {
                Piece::Encoded(run) => out.push_str(run),
                Piece::Fill(line) => out.push_str(&quoted_printable::encode_to_str(fill(line))),
            }
        }
        Body::dangerous_pre_encoded(out.into_bytes(), ContentTransferEncoding::QuotedPrintable)
    }

    /// Bytes held, for bounding a cache of them.
    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether lettre encodes `text` as quoted-printable (the only encoding a [`SplicedBody`]
    /// stands in for).
    fn lettre_chooses_quoted_printable(text: &str) -> bool {
        Body::new(text.to_owned()).encoding() == ContentTransferEncoding::QuotedPrintable
    }

    #[test]
    fn bare_line_feeds_become_crlf_and_existing_crlfs_are_kept() {
        assert_eq!(crlf_line_endings("a\nb\r\nc\n".into()), "a\r\nb\r\nc\r\n");
        assert_eq!(crlf_line_endings("\nx".into()), "\r\nx");
        assert_eq!(crlf_line_endings("no break".into()), "no break");
        assert_eq!(crlf_line_endings("a\r\n\r\n".into()), "a\r\n\r\n");
        assert_eq!(crlf_line_endings("lone\rcr\n".into()), "lone\rcr\r\n");
    }

    /// The spliced encoding is byte for byte lettre's own, on text that exercises what
    /// quoted-printable does at line ends: long lines, trailing spaces, `=`, non-ASCII.
    #[test]
    fn a_spliced_body_is_the_body_lettre_encodes_for_the_filled_in_text() {
        let long = "word ".repeat(40);
        let stand_in = format!(
            "Caf\u{e9} =agenda= \u{2013} item\r\n{long}\r\ntrailing space \r\n\
             Unsubscribe: \u{2}u\u{3}\r\n\r\n\u{2}u\u{3} and again \u{2}u\u{3} {long}\r\nend"
        );
        let link = "https://digest.example.org/unsubscribe?token=a1B2c3-d4_e5&x=1";
        let fill = |line: &str| line.replace("\u{2}u\u{3}", link);
        let filled = fill(&stand_in);
        assert!(lettre_chooses_quoted_printable(&filled));

        let spliced = SplicedBody::new(&stand_in, |line| line.contains('\u{2}')).body(fill);
        let lettre = Body::new(filled);
        assert_eq!(spliced.encoding(), lettre.encoding());
        assert_eq!(
            String::from_utf8(spliced.into_vec()).unwrap(),
            String::from_utf8(lettre.into_vec()).unwrap()
        );
    }

    #[test]
    fn short_ascii_is_not_quoted_printable_so_it_is_left_to_lettre() {
        assert!(!lettre_chooses_quoted_printable("Hello\r\nthere\r\n"));
    }
}
