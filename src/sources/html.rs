//! Agenda text, minutes and feed summaries arrive as HTML, often exported from Word. They are
//! sanitised with a strict allow-list (ammonia) before they are stored, and given a plain-text
//! form (html2text) for text e-mails and extracts.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Tags kept: structure and emphasis only. Everything else (Word's `<o:p>`, `<span
/// style=...>`, scripts, images, forms) is removed, keeping its text where it has any.
const ALLOWED_TAGS: &[&str] = &[
    "p",
    "br",
    "ul",
    "ol",
    "li",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "a",
    "h2",
    "h3",
    "h4",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "blockquote",
];

fn cleaner() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let mut builder = ammonia::Builder::empty();
        builder
            .tags(ALLOWED_TAGS.iter().copied().collect::<HashSet<_>>())
            .link_rel(Some("noopener noreferrer nofollow"))
            .url_schemes(["http", "https", "mailto"].into_iter().collect())
            .add_tag_attributes("a", ["href"])
            .add_tag_attributes("td", ["colspan", "rowspan"])
            .add_tag_attributes("th", ["colspan", "rowspan"])
            .clean_content_tags(["script", "style", "title", "head"].into_iter().collect())
            .strip_comments(true);
        builder
    })
}

/// Sanitised HTML, or `None` when nothing but white space is left.
pub fn sanitise_html(raw: &str) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    let cleaned = cleaner().clean(raw).to_string();
    let collapsed = collapse_empty_blocks(&cleaned);
    let text = html_to_plain(&collapsed);
    (!text.trim().is_empty()).then(|| collapsed.trim().to_owned())
}

/// Removes paragraphs left empty once Word's markup is gone (`<p></p>`, `<p> </p>`).
fn collapse_empty_blocks(html: &str) -> String {
    let mut out = html.to_owned();
    loop {
        let before = out.len();
        for empty in ["<p></p>", "<p> </p>", "<p>\u{a0}</p>", "<p>&nbsp;</p>"] {
            out = out.replace(empty, "");
        }
        if out.len() == before {
            return out;
        }
    }
}

/// The plain-text form of (sanitised) HTML: paragraphs on their own lines, inner line breaks
/// from the source's wrapping joined up, no link footnotes.
pub fn html_to_plain(html: &str) -> String {
    let text = html2text::config::plain_no_decorate()
        .link_footnotes(false)
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_default();
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        lines.push(line.to_owned());
    }
    let joined = lines.join("\n");
    let mut out = String::new();
    for paragraph in joined.split("\n\n") {
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&words.join(" "));
    }
    out
}

/// Resolves a document link against the committee-system base: absolute links are kept,
/// relative ones (`documents/s7942/polc2 - 23.09.2015.pdf`) are joined to the base, with raw
/// spaces and other unsafe characters percent-encoded. `None` when it cannot be a web link.
pub fn resolve_link(base: &str, raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let base = if base.ends_with('/') {
        url::Url::parse(base).ok()?
    } else {
        url::Url::parse(&format!("{base}/")).ok()?
    };
    let joined = base.join(raw).ok()?;
    matches!(joined.scheme(), "http" | "https").then(|| joined.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_markup_is_reduced_to_paragraphs_and_scripts_vanish() {
        let raw = "<div class=\"WordSection1\">\n<p class=\"MsoNormal\"><span style=\"\">To \
                   approve as a correct record</span><o:p></o:p></p>\n<script>alert(1)</script>\
                   <p onclick=\"x()\"><img src=x onerror=y>Next</p></div>";
        let clean = sanitise_html(raw).unwrap();
        assert_eq!(clean, "<p>To approve as a correct record</p>\n<p>Next</p>");
    }

    #[test]
    fn links_keep_only_safe_schemes_and_gain_rel() {
        let clean =
            sanitise_html("<a href=\"javascript:x()\">a</a> <a href=\"https://e.org/x\">b</a>")
                .unwrap();
        assert!(!clean.contains("javascript"), "{clean}");
        assert!(
            clean
                .contains("<a href=\"https://e.org/x\" rel=\"noopener noreferrer nofollow\">b</a>"),
            "{clean}"
        );
    }

    #[test]
    fn white_space_only_html_is_nothing() {
        assert_eq!(sanitise_html("  \n "), None);
        assert_eq!(
            sanitise_html("<div><p class=\"MsoNormal\"><o:p>&nbsp;</o:p></p></div>"),
            None
        );
    }

    #[test]
    fn the_plain_form_joins_wrapped_lines_and_keeps_paragraphs() {
        let plain = html_to_plain("<p>To approve as a correct record\nthe minutes.</p><p>Two</p>");
        assert_eq!(plain, "To approve as a correct record the minutes.\n\nTwo");
    }

    #[test]
    fn relative_document_links_resolve_against_the_base_with_spaces_encoded() {
        assert_eq!(
            resolve_link(
                "https://democracy.example.gov.uk",
                "documents/s7942/polc2 - 23.09.2015.pdf"
            )
            .as_deref(),
            Some("https://democracy.example.gov.uk/documents/s7942/polc2%20-%2023.09.2015.pdf")
        );
        assert_eq!(
            resolve_link("https://a.gov.uk/", "https://b.gov.uk/x.pdf").as_deref(),
            Some("https://b.gov.uk/x.pdf")
        );
        assert_eq!(
            resolve_link("https://a.gov.uk/democracy", "mgConvert2PDF.aspx?ID=1").as_deref(),
            Some("https://a.gov.uk/democracy/mgConvert2PDF.aspx?ID=1")
        );
        assert_eq!(
            resolve_link("https://a.gov.uk", "javascript:alert(1)"),
            None
        );
        assert_eq!(resolve_link("https://a.gov.uk", "  "), None);
    }
}
