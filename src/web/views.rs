//! The page templates: handlebars in strict mode (a missing variable is an error, not an empty
//! string), built into the binary so it runs from any folder. Every value is HTML-escaped;
//! the only unescaped insertions are a page body into the layout and agenda text that has been
//! through the sanitiser.

use handlebars::Handlebars;
use serde::Serialize;

/// The site's stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../../templates/web/site.css");
pub const STYLESHEET_PATH: &str = "/assets/site.css";

const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../../templates/web/layout.hbs")),
    ("index", include_str!("../../templates/web/index.hbs")),
    ("council", include_str!("../../templates/web/council.hbs")),
    ("meeting", include_str!("../../templates/web/meeting.hbs")),
    ("confirm", include_str!("../../templates/web/confirm.hbs")),
    (
        "unsubscribe",
        include_str!("../../templates/web/unsubscribe.hbs"),
    ),
    (
        "preferences",
        include_str!("../../templates/web/preferences.hbs"),
    ),
    ("message", include_str!("../../templates/web/message.hbs")),
];

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("page template `{name}` does not compile: {source}")]
    Template {
        name: &'static str,
        #[source]
        source: Box<handlebars::TemplateError>,
    },
    #[error("cannot render the page `{name}`: {source}")]
    Render {
        name: &'static str,
        #[source]
        source: Box<handlebars::RenderError>,
    },
}

/// The compiled page templates.
#[derive(Debug)]
pub struct Views {
    registry: Handlebars<'static>,
}

#[derive(Serialize)]
struct Layout<'a> {
    title: &'a str,
    body: &'a str,
    stylesheet: &'a str,
}

impl Views {
    pub fn new() -> Result<Views, ViewError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.set_dev_mode(false);
        for (name, text) in TEMPLATES {
            registry
                .register_template_string(name, *text)
                .map_err(|source| ViewError::Template {
                    name,
                    source: Box::new(source),
                })?;
        }
        Ok(Views { registry })
    }

    /// Renders the page `name` with `data` inside the site layout.
    pub fn page(
        &self,
        name: &'static str,
        title: &str,
        data: &impl Serialize,
    ) -> Result<String, ViewError> {
        let body = self.render(name, data)?;
        self.render(
            "layout",
            &Layout {
                title,
                body: &body,
                stylesheet: STYLESHEET_PATH,
            },
        )
    }

    fn render(&self, name: &'static str, data: &impl Serialize) -> Result<String, ViewError> {
        self.registry
            .render(name, data)
            .map_err(|source| ViewError::Render {
                name,
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_template_compiles() {
        assert!(Views::new().is_ok());
    }

    #[test]
    fn a_missing_variable_is_an_error_rather_than_an_empty_string() {
        let views = Views::new().unwrap();
        let err = views
            .page("message", "Title", &serde_json::json!({}))
            .unwrap_err();
        assert!(matches!(
            err,
            ViewError::Render {
                name: "message",
                ..
            }
        ));
    }

    #[test]
    fn values_are_escaped_in_the_layout_and_pages() {
        let views = Views::new().unwrap();
        let html = views
            .page(
                "message",
                "<script>alert(1)</script>",
                &serde_json::json!({
                    "heading": "A & B <i>",
                    "paragraphs": ["\"quoted\" <b>"],
                    "links": [],
                }),
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("A &amp; B &lt;i&gt;"));
        assert!(html.contains("&quot;quoted&quot; &lt;b&gt;"));
        assert!(!html.contains("<script>"));
    }
}
