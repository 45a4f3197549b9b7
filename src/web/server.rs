//! The HTTP server: the shared state, the routes, the layers every request passes through, and
//! serving until shutdown.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::tokens::SigningKey;
use crate::web::mailer::Mailer;
use crate::web::security::{self, FormGuard, RateLimits};
use crate::web::views::{self, ViewError, Views};
use crate::web::{forms, metrics, pages};

/// What every handler shares. Cheap to clone.
///
/// The settings are those the server started with: a SIGHUP reload reaches the scheduled jobs,
/// not the web server (its address, limits and links stay as they were until a restart).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    settings: Arc<Settings>,
    links: SigningKey,
    guard: FormGuard,
    views: Views,
    limits: RateLimits,
    mailer: Mailer,
}

/// Failures starting the web server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Views(#[from] ViewError),
    #[error("cannot set up outgoing mail for the web forms: {0}")]
    Mail(String),
    #[error("cannot serve HTTP: {0}")]
    Serve(#[from] std::io::Error),
}

impl AppState {
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        signing_key: SigningKey,
    ) -> Result<AppState, StartError> {
        let views = Views::new()?;
        let mailer = Mailer::from_settings(&settings, signing_key.clone(), store.clock().clone())
            .map_err(StartError::Mail)?;
        Ok(AppState {
            inner: Arc::new(Inner {
                limits: RateLimits::from_settings(&settings.web),
                guard: FormGuard::new(signing_key.clone()),
                links: signing_key,
                store,
                settings,
                views,
                mailer,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn links(&self) -> &SigningKey {
        &self.inner.links
    }

    pub fn guard(&self) -> &FormGuard {
        &self.inner.guard
    }

    pub fn views(&self) -> &Views {
        &self.inner.views
    }

    pub fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }

    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// A public URL on this site, for e-mails: `web.base_url` followed by `path`.
    pub fn public_url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.inner.settings.web.base_url.trim_end_matches('/')
        )
    }

    /// Whether cookies must be marked Secure (the site is served over HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.inner.settings.web.base_url.starts_with("https://")
    }
}

/// Failures of one request, each with the plain message a visitor sees; the log gets the cause.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the form could not be read: {0}")]
    BadForm(String),
    #[error("the form's security check failed")]
    Forged,
    #[error("the e-mail could not be sent")]
    MailUnsent,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("{0}")]
    Internal(String),
}

/// What the error-page layer turns into a full page.
#[derive(Debug, Clone)]
struct ErrorPage {
    heading: &'static str,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match &self {
            WebError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "Page not found",
                format!(
                    "The {what} you asked for does not exist, or the link is not valid. \
                     Check that the whole link was copied from the e-mail."
                ),
            ),
            WebError::BadForm(problem) => (
                StatusCode::BAD_REQUEST,
                "The form could not be read",
                format!("The form could not be read ({problem}). Go back and try again."),
            ),
            WebError::Forged => (
                StatusCode::FORBIDDEN,
                "The form has expired",
                "The form was sent without its security code, or from another site. Go back, \
                 reload the page and send the form again."
                    .to_owned(),
            ),
            WebError::MailUnsent => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The e-mail could not be sent",
                "We could not send the e-mail just now. Please send the form again in a few \
                 minutes."
                    .to_owned(),
            ),
            WebError::Store(_) | WebError::View(_) | WebError::Internal(_) => {
                tracing::error!(error = %error_chain(&self), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Something went wrong on our side. Nothing you sent has been lost; please \
                     try again in a few minutes."
                        .to_owned(),
                )
            }
        };
        let mut response = status.into_response();
        response
            .extensions_mut()
            .insert(ErrorPage { heading, message });
        response
    }
}

/// An error and its sources, joined for the log.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The client's address, when the server was started with connection info ([`serve`] does).
/// Without it (the bare [`router`] served some other way) every client reads as 0.0.0.0 and
/// so shares one rate limit.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientAddr(addr))
    }
}

/// The whole application: every route and layer.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings().web.max_body_bytes;
    Router::new()
        .route("/", get(pages::index))
        .route("/councils/{slug}", get(pages::council))
        .route(
            "/councils/{slug}/subscribe",
            axum::routing::post(forms::subscribe),
        )
        .route(
            "/councils/{slug}/request",
            axum::routing::post(forms::request),
        )
        .route("/meetings/{id}", get(pages::meeting))
        .route("/digests/{token}", get(pages::digest))
        .route(
            "/preferences/{token}",
            get(forms::preferences_page).post(forms::preferences_save),
        )
        .route(
            "/confirm/{token}",
            get(forms::confirm_page).post(forms::confirm),
        )
        .route(
            "/unsubscribe/{token}",
            get(forms::unsubscribe_page).post(forms::unsubscribe),
        )
        .route("/healthz", get(pages::healthz))
        .route("/metrics", get(metrics::metrics))
        .route(views::STYLESHEET_PATH, get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            render_error_pages,
        ))
        .layer(middleware::from_fn(secure_headers))
        .layer(middleware::from_fn(trace_requests))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then lets requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "web server listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    tracing::info!("web server stopped");
    Ok(())
}

async fn not_found() -> WebError {
    WebError::NotFound("page")
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        views::STYLESHEET,
    )
        .into_response()
}

/// One span per request, named by the matched route (never the raw path: it can hold a token);
/// the health check logs at debug so that probes do not fill the log.
async fn trace_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let quiet = route == "/healthz";
    let span = if quiet {
        tracing::debug_span!("request", %method, route = %route)
    } else {
        tracing::info_span!("request", %method, route = %route)
    };
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    // Tenths of a millisecond: `9.1`, not `9.099981999999999`.
    let millis = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    span.in_scope(|| {
        if quiet {
            tracing::debug!(status, millis, "request finished");
        } else {
            tracing::info!(status, millis, "request finished");
        }
    });
    response
}

async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    security::add_security_headers(response.headers_mut());
    response
}

/// Gives error responses (ours and the framework's, such as an oversize body) a full page.
async fn render_error_pages(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let page = response.extensions().get::<ErrorPage>().cloned();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let page = page.unwrap_or_else(|| framework_error_page(status));
    let data = serde_json::json!({
        "heading": page.heading,
        "paragraphs": [page.message],
        "links": [{"href": "/", "text": "Find a council"}],
    });
    match state.views().page("message", page.heading, &data) {
        Ok(html) => {
            let mut out = (status, axum::response::Html(html)).into_response();
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    out.headers_mut().insert(name.clone(), value.clone());
                }
            }
            out
        }
        Err(err) => {
            tracing::error!(error = %error_chain(&err), "cannot render an error page");
            let mut out = (status, page.message).into_response();
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            out
        }
    }
}

fn framework_error_page(status: StatusCode) -> ErrorPage {
    let (heading, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "Too much was sent",
            "The form sent more than this site accepts. Shorten the message and try again.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "Not allowed",
            "This address does not accept that kind of request.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "The form could not be read",
            "The form was not sent as a web form. Go back and try again.",
        ),
        _ if status.is_server_error() => (
            "Something went wrong",
            "Something went wrong on our side; please try again in a few minutes.",
        ),
        _ => (
            "The request could not be handled",
            "The request could not be handled. Go back and try again.",
        ),
    };
    ErrorPage {
        heading,
        message: message.to_owned(),
    }
}
