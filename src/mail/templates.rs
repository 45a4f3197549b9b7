//! The e-mail templates, compiled once.
//!
//! Each message has three templates under `templates/mail/`: `NAME.subject.hbs`,
//! `NAME.txt.hbs` and `NAME.html.hbs`, with shared partials in `partials/`. The built-in set is
//! embedded in the binary, so an installed copy runs from any folder; a file of the same
//! relative path in `mail.templates_dir` replaces the built-in one.
//!
//! Two registries, both in strict mode (a value the model lacks is an error, not an empty
//! string): the HTML one escapes every value, and the text one (subjects and text bodies)
//! escapes nothing, so `Bath & North East Somerset` and URLs with `&` come out as they are.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use handlebars::Handlebars;
use serde::Serialize;

use crate::mail::MailError;
use crate::mail::body::SplicedBody;
use crate::settings::Settings;

/// A message the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailTemplate {
    Digest,
    Confirmation,
    Promoted,
    Demoted,
    RequestAck,
}

impl MailTemplate {
    pub const ALL: &'static [MailTemplate] = &[
        MailTemplate::Digest,
        MailTemplate::Confirmation,
        MailTemplate::Promoted,
        MailTemplate::Demoted,
        MailTemplate::RequestAck,
    ];

    /// The template's file name stem, also the delivery kind of a notice.
    pub fn name(self) -> &'static str {
        match self {
            MailTemplate::Digest => "digest",
            MailTemplate::Confirmation => "confirmation",
            MailTemplate::Promoted => "promoted",
            MailTemplate::Demoted => "demoted",
            MailTemplate::RequestAck => "request_ack",
        }
    }
}

/// The built-in templates: relative path and text.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "digest.subject.hbs",
        include_str!("../../templates/mail/digest.subject.hbs"),
    ),
    (
        "digest.txt.hbs",
        include_str!("../../templates/mail/digest.txt.hbs"),
    ),
    (
        "digest.html.hbs",
        include_str!("../../templates/mail/digest.html.hbs"),
    ),
    (
        "confirmation.subject.hbs",
        include_str!("../../templates/mail/confirmation.subject.hbs"),
    ),
    (
        "confirmation.txt.hbs",
        include_str!("../../templates/mail/confirmation.txt.hbs"),
    ),
    (
        "confirmation.html.hbs",
        include_str!("../../templates/mail/confirmation.html.hbs"),
    ),
    (
        "promoted.subject.hbs",
        include_str!("../../templates/mail/promoted.subject.hbs"),
    ),
    (
        "promoted.txt.hbs",
        include_str!("../../templates/mail/promoted.txt.hbs"),
    ),
    (
        "promoted.html.hbs",
        include_str!("../../templates/mail/promoted.html.hbs"),
    ),
    (
        "demoted.subject.hbs",
        include_str!("../../templates/mail/demoted.subject.hbs"),
    ),
    (
        "demoted.txt.hbs",
        include_str!("../../templates/mail/demoted.txt.hbs"),
    ),
    (
        "demoted.html.hbs",
        include_str!("../../templates/mail/demoted.html.hbs"),
    ),
    (
        "request_ack.subject.hbs",
        include_str!("../../templates/mail/request_ack.subject.hbs"),
    ),
    (
        "request_ack.txt.hbs",
        include_str!("../../templates/mail/request_ack.txt.hbs"),
    ),
    (
        "request_ack.html.hbs",
        include_str!("../../templates/mail/request_ack.html.hbs"),
    ),
    (
        "partials/head.html.hbs",
        include_str!("../../templates/mail/partials/head.html.hbs"),
    ),
    (
        "partials/foot.html.hbs",
        include_str!("../../templates/mail/partials/foot.html.hbs"),
    ),
    (
        "partials/meeting.html.hbs",
        include_str!("../../templates/mail/partials/meeting.html.hbs"),
    ),
    (
        "partials/footer.txt.hbs",
        include_str!("../../templates/mail/partials/footer.txt.hbs"),
    ),
    (
        "partials/meeting.txt.hbs",
        include_str!("../../templates/mail/partials/meeting.txt.hbs"),
    ),
];

/// Subject, text body and HTML body of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedParts {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The compiled templates. Build one per process (or per settings reload) and share it; a
/// clone shares the compiled templates (for rendering on other threads).
#[derive(Debug, Clone)]
pub struct Renderer {
    html: Arc<Handlebars<'static>>,
    text: Arc<Handlebars<'static>>,
    shared: Arc<SharedRenders>,
}

/// Renderings shared by the recipients of the same message: parts rendered with stand-ins for
/// the per-recipient links, by a key naming everything else they were rendered from (see
/// `mail::message::render_claimed`). Bounded to [`SHARED_RENDERS_BYTES`]; when full it is
/// emptied and fills again.
#[derive(Default)]
pub struct SharedRenders {
    inner: Mutex<SharedRendersInner>,
}

/// One shared rendering: the parts with stand-ins for the links, and the bodies encoded once
/// where lettre would encode them as quoted-printable (`None`: left to lettre per recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRendering {
    pub parts: RenderedParts,
    pub text: Option<SplicedBody>,
    pub html: Option<SplicedBody>,
}

impl SharedRendering {
    fn bytes(&self) -> usize {
        let parts = self.parts.subject.len() + self.parts.text.len() + self.parts.html.len();
        let spliced = |body: &Option<SplicedBody>| body.as_ref().map_or(0, SplicedBody::len);
        parts + spliced(&self.text) + spliced(&self.html)
    }
}

#[derive(Default)]
struct SharedRendersInner {
    parts: HashMap<String, Arc<SharedRendering>>,
    bytes: usize,
    /// Set when a template was found to use a link other than by printing it, so that the
    /// stand-ins cannot be swapped for the real links: every message is then rendered alone.
    unsplicable: bool,
}

/// The most bytes of shared renderings kept at once.
pub const SHARED_RENDERS_BYTES: usize = 32 << 20;

impl std::fmt::Debug for SharedRenders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRenders").finish_non_exhaustive()
    }
}

impl SharedRenders {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharedRendersInner> {
        // The map is valid whatever a panicking holder left half done.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether renderings can be shared at all with the loaded templates.
    pub fn splicable(&self) -> bool {
        !self.lock().unsplicable
    }

    pub fn mark_unsplicable(&self) {
        let mut inner = self.lock();
        inner.unsplicable = true;
        inner.parts.clear();
        inner.bytes = 0;
    }

    /// How many renderings are kept.
    pub fn len(&self) -> usize {
        self.lock().parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bodies of the kept renderings are encoded once for all their recipients.
    pub fn encoded_bodies(&self) -> usize {
        self.lock()
            .parts
            .values()
            .map(|r| usize::from(r.text.is_some()) + usize::from(r.html.is_some()))
            .sum()
    }

    pub fn get(&self, key: &str) -> Option<Arc<SharedRendering>> {
        self.lock().parts.get(key).cloned()
    }

    pub fn insert(&self, key: String, rendering: SharedRendering) {
        let key_size = key.len();
        let size = key_size + rendering.bytes();
        let mut inner = self.lock();
        if inner.bytes + size > SHARED_RENDERS_BYTES {
            inner.parts.clear();
            inner.bytes = 0;
        }
        inner.bytes += size;
        if let Some(old) = inner.parts.insert(key, Arc::new(rendering)) {
            inner.bytes = inner.bytes.saturating_sub(key_size + old.bytes());
        }
    }
}

impl Renderer {
    /// The built-in templates, with any in `mail.templates_dir` replacing them by name.
    pub fn new(settings: &Settings) -> Result<Renderer, MailError> {
        let dir = settings.mail.templates_dir.trim();
        Renderer::with_overrides((!dir.is_empty()).then(|| Path::new(dir)))
    }

    /// The built-in templates alone.
    pub fn built_in() -> Result<Renderer, MailError> {
        Renderer::with_overrides(None)
    }

    /// The built-in templates, replaced file by file from `dir` when given. A file in `dir`
    /// whose path is not one of the built-in ones is refused, so a misspelt name is noticed.
    pub fn with_overrides(dir: Option<&Path>) -> Result<Renderer, MailError> {
        let mut sources: BTreeMap<String, String> = BUILT_IN
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect();
        if let Some(dir) = dir {
            for (relative, text) in read_override_dir(dir)? {
                if !sources.contains_key(&relative) {
                    let known: Vec<&str> = BUILT_IN.iter().map(|(p, _)| *p).collect();
                    return Err(MailError::TemplateFile {
                        path: dir.join(&relative).display().to_string(),
                        detail: format!(
                            "not a template name this version knows; expected one of: {}",
                            known.join(", ")
                        ),
                    });
                }
                sources.insert(relative, text);
            }
        }

        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        html.register_escape_fn(escape_html);
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);

        for (path, source) in &sources {
            let compile_error = |err: handlebars::TemplateError| MailError::Template {
                name: path.clone(),
                detail: err.to_string(),
            };
            if let Some(partial) = path.strip_prefix("partials/") {
                if let Some(name) = partial.strip_suffix(".html.hbs") {
                    html.register_partial(name, source.as_str())
                        .map_err(compile_error)?;
                } else if let Some(name) = partial.strip_suffix(".txt.hbs") {
                    text.register_partial(name, source.as_str())
                        .map_err(compile_error)?;
                }
            } else if let Some(name) = path.strip_suffix(".html.hbs") {
                html.register_template_string(name, source.as_str())
                    .map_err(compile_error)?;
            } else if let Some(name) = path.strip_suffix(".txt.hbs") {
                text.register_template_string(&format!("{name}.txt"), source.as_str())
                    .map_err(compile_error)?;
            } else if let Some(name) = path.strip_suffix(".subject.hbs") {
                text.register_template_string(&format!("{name}.subject"), source.as_str())
                    .map_err(compile_error)?;
            }
        }
        Ok(Renderer {
            html: Arc::new(html),
            text: Arc::new(text),
            shared: Arc::new(SharedRenders::default()),
        })
    }

    /// Renders the subject, text and HTML of `template` from one view model.
    pub fn render<T: Serialize>(
        &self,
        template: MailTemplate,
        model: &T,
    ) -> Result<RenderedParts, MailError> {
        // The model becomes handlebars' JSON once, for all three templates.
        let context = handlebars::Context::wraps(model).map_err(|err| MailError::Template {
            name: template.name().to_owned(),
            detail: err.to_string(),
        })?;
        let with_context = |registry: &Handlebars<'static>, name: String| {
            registry
                .render_with_context(&name, &context)
                .map_err(|err| MailError::Template {
                    name,
                    detail: err.to_string(),
                })
        };
        let subject = with_context(&self.text, format!("{}.subject", template.name()))?;
        let text = with_context(&self.text, format!("{}.txt", template.name()))?;
        let html = with_context(&self.html, template.name().to_owned())?;
        Ok(RenderedParts {
            subject: one_line(&subject),
            text: tidy_text(&text),
            html,
        })
    }

    /// Renderings shared between recipients of the same message.
    pub fn shared(&self) -> &SharedRenders {
        &self.shared
    }

    /// The HTML body alone (the web view of a digest).
    pub fn render_html<T: Serialize>(
        &self,
        template: MailTemplate,
        model: &T,
    ) -> Result<String, MailError> {
        self.render_in(&self.html, template.name(), model)
    }

    /// The text body alone.
    pub fn render_text<T: Serialize>(
        &self,
        template: MailTemplate,
        model: &T,
    ) -> Result<String, MailError> {
        let body = self.render_in(&self.text, &format!("{}.txt", template.name()), model)?;
        Ok(tidy_text(&body))
    }

    fn render_in<T: Serialize>(
        &self,
        registry: &Handlebars<'static>,
        name: &str,
        model: &T,
    ) -> Result<String, MailError> {
        registry
            .render(name, model)
            .map_err(|err| MailError::Template {
                name: name.to_owned(),
                detail: err.to_string(),
            })
    }
}

/// Escapes a value for HTML text and for attribute values in double or single quotes, which
/// is how every template writes them: `&`, `<`, `>`, `"` and `'`. URLs keep their `=` and `/`
/// readable (handlebars' default would also escape `=` and backticks, which only matter in
/// unquoted attributes).
pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + raw.len() / 8);
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Reads every `*.hbs` file under `dir` (and its `partials/` folder) as relative path and text.
fn read_override_dir(dir: &Path) -> Result<Vec<(String, String)>, MailError> {
    let file_error = |path: &Path, err: std::io::Error| MailError::TemplateFile {
        path: path.display().to_string(),
        detail: err.to_string(),
    };
    let mut out = Vec::new();
    for (folder, prefix) in [(dir.to_path_buf(), ""), (dir.join("partials"), "partials/")] {
        if prefix.is_empty() && !folder.is_dir() {
            return Err(MailError::TemplateFile {
                path: folder.display().to_string(),
                detail: "mail.templates_dir is not a folder".to_owned(),
            });
        }
        if !folder.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&folder).map_err(|err| file_error(&folder, err))?;
        for entry in entries {
            let entry = entry.map_err(|err| file_error(&folder, err))?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !path.is_file() || !file_name.ends_with(".hbs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|err| file_error(&path, err))?;
            out.push((format!("{prefix}{file_name}"), text));
        }
    }
    Ok(out)
}

/// A subject is one line: runs of whitespace (a template's newlines included) become a space.
fn one_line(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text bodies: no trailing spaces, at most one blank line in a row, one final newline.
fn tidy_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_run = 0;
    for line in raw.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_collapse_to_one_line() {
        assert_eq!(
            one_line("  Manchester:\n 1 meeting \t\n"),
            "Manchester: 1 meeting"
        );
    }

    #[test]
    fn text_bodies_lose_trailing_space_and_repeated_blank_lines() {
        assert_eq!(tidy_text("\n\nA  \n\n\n\nB\n\n"), "A\n\nB\n");
    }

    #[test]
    fn the_text_registry_leaves_values_as_they_are_and_the_html_one_escapes_them() {
        let mut renderer = Renderer::built_in().unwrap();
        Arc::get_mut(&mut renderer.text)
            .unwrap()
            .register_template_string("t", "{{v}}")
            .unwrap();
        Arc::get_mut(&mut renderer.html)
            .unwrap()
            .register_template_string("t", "<a href=\"{{v}}\">{{v}}</a>")
            .unwrap();
        let model = serde_json::json!({"v": "https://e.gov.uk/?a=1&b='2' <x> \"q\""});
        assert_eq!(
            renderer.render_in(&renderer.text, "t", &model).unwrap(),
            "https://e.gov.uk/?a=1&b='2' <x> \"q\""
        );
        assert_eq!(
            renderer.render_in(&renderer.html, "t", &model).unwrap(),
            "<a href=\"https://e.gov.uk/?a=1&amp;b=&#39;2&#39; &lt;x&gt; &quot;q&quot;\">\
             https://e.gov.uk/?a=1&amp;b=&#39;2&#39; &lt;x&gt; &quot;q&quot;</a>"
        );
    }

    #[test]
    fn a_template_using_a_value_the_model_lacks_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("confirmation.subject.hbs"),
            "Hi {{no_such_value}}",
        )
        .unwrap();
        let renderer = Renderer::with_overrides(Some(dir.path())).unwrap();
        let err = renderer
            .render(MailTemplate::Confirmation, &serde_json::json!({}))
            .unwrap_err();
        assert!(err.to_string().contains("confirmation.subject"), "{err}");
    }

    #[test]
    fn an_override_replaces_the_built_in_template_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("demoted.subject.hbs"),
            "Changed: {{council.name}}",
        )
        .unwrap();
        let renderer = Renderer::with_overrides(Some(dir.path())).unwrap();
        let model = serde_json::json!({"council": {"name": "Bath & North East Somerset"}});
        let subject = renderer
            .render_in(&renderer.text, "demoted.subject", &model)
            .unwrap();
        assert_eq!(subject, "Changed: Bath & North East Somerset");
    }

    #[test]
    fn an_override_with_an_unknown_name_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("digset.html.hbs"), "x").unwrap();
        let err = Renderer::with_overrides(Some(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("digset.html.hbs"), "{text}");
        assert!(text.contains("digest.html.hbs"), "{text}");
    }

    #[test]
    fn an_override_that_does_not_parse_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("promoted.txt.hbs"), "{{#if x}}unclosed").unwrap();
        let err = Renderer::with_overrides(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("promoted.txt.hbs"), "{err}");
    }
}
