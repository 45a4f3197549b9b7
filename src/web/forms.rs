//! The pages that change something: subscribe, enablement requests, confirmation,
//! preferences and unsubscribe.
//!
//! Every form carries an anti-forgery token except the unsubscribe endpoint, which RFC 8058
//! mail clients post to without cookies. A GET never changes anything: mail scanners fetch
//! every link in a message.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::domain::{CouncilSlug, EmailAddress, SubscriberKind, SubscriptionState};
use crate::store::councils::Council;
use crate::subscriptions::{self, ConfirmOutcome, SubscribeOutcome, SubscriptionError};
use crate::tokens::LinkPurpose;
use crate::web::pages;
use crate::web::security::{self, GUARD_FIELD, HONEYPOT_FIELD, Limited};
use crate::web::server::{AppState, ClientAddr, WebError, error_chain};

/// Longest name or organisation accepted, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest e-mail address accepted (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;

/// A visitor's anti-forgery cookie, and the token its forms carry.
#[derive(Debug, Clone)]
pub struct FormSession {
    cookie_value: String,
    token: String,
    is_new: bool,
    secure: bool,
}

impl FormSession {
    /// The visitor's cookie value when it sent one, else a new one to set.
    pub fn from_headers(state: &AppState, headers: &HeaderMap) -> FormSession {
        let (cookie_value, is_new) = match security::guard_cookie(headers) {
            Some(value) => (value, false),
            None => (crate::tokens::random_token(), true),
        };
        FormSession {
            token: state.guard().token_for(&cookie_value),
            cookie_value,
            is_new,
            secure: state.secure_cookies(),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Adds the cookie to `response` when the visitor did not have one yet.
    pub fn attach(&self, mut response: Response) -> Response {
        if self.is_new {
            let cookie = security::guard_set_cookie(&self.cookie_value, self.secure);
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }
}

/// The fields of a posted form, in order; a field sent twice keeps every value.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn from_form(
        form: Result<Form<Vec<(String, String)>>, FormRejection>,
    ) -> Result<Fields, WebError> {
        match form {
            Ok(Form(pairs)) => Ok(Fields(pairs)),
            Err(rejection) => Err(WebError::BadForm(rejection.body_text())),
        }
    }

    /// The first value of `name`, or "" when it was not sent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Refuses a post whose anti-forgery token does not match the visitor's cookie.
fn check_guard(state: &AppState, headers: &HeaderMap, fields: &Fields) -> Result<(), WebError> {
    let cookie = security::guard_cookie(headers);
    let token = Some(fields.get(GUARD_FIELD)).filter(|t| !t.is_empty());
    if state.guard().accepts(cookie.as_deref(), token) {
        Ok(())
    } else {
        tracing::info!("form refused: anti-forgery token missing or wrong");
        Err(WebError::Forged)
    }
}

/// The subscribe form as typed, with the problem to show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubscribeForm {
    pub email: String,
    pub professional: bool,
    pub organisation: String,
    pub error: Option<String>,
}

/// The enablement request form as typed, with the problem to show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestForm {
    pub name: String,
    pub organisation: String,
    pub email: String,
    pub message: String,
    pub represents_council: bool,
    pub error: Option<String>,
}

/// Words for a refused rate limit.
fn limited_message(limit: Limited) -> String {
    match limit {
        Limited::Client => "Too many forms have been sent from your connection in the last \
                            minute. Wait a minute and try again."
            .to_owned(),
        Limited::Address => "Too many e-mails have been sent to this address in the last hour. \
                             Try again later."
            .to_owned(),
    }
}

/// Words for a filled-in honeypot field.
const HONEYPOT_MESSAGE: &str = "The form was sent with the field “Leave this field empty” \
                                filled in, which only automated programs do. Clear it and send \
                                the form again.";

/// The e-mail address of a form, parsed, or the problem in words.
fn parse_address(raw: &str) -> Result<EmailAddress, String> {
    if raw.trim().is_empty() {
        return Err("Enter your e-mail address.".to_owned());
    }
    if raw.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!(
            "The e-mail address is too long (at most {MAX_EMAIL_CHARS} characters)."
        ));
    }
    raw.parse::<EmailAddress>().map_err(|_| {
        "Enter an e-mail address such as name@example.org; the one given is not valid.".into()
    })
}

/// `POST /councils/{slug}/subscribe`: records a pending subscription and mails the link to
/// confirm it. The page that follows is the same whether or not the address was known.
pub async fn subscribe(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let fields = Fields::from_form(form)?;
    check_guard(&state, &headers, &fields)?;
    let council = pages::council_from_path(&state, &slug).await?;
    let session = FormSession::from_headers(&state, &headers);
    let mut typed = SubscribeForm {
        email: fields.get("email").to_owned(),
        professional: fields.get("kind") == "professional",
        organisation: fields.get("organisation").to_owned(),
        error: None,
    };
    let refuse = |typed: &mut SubscribeForm, message: String, status: StatusCode| {
        typed.error = Some(message);
        (typed.clone(), status)
    };

    let checked = if !fields.get(HONEYPOT_FIELD).is_empty() {
        Err(refuse(
            &mut typed,
            HONEYPOT_MESSAGE.to_owned(),
            StatusCode::BAD_REQUEST,
        ))
    } else if let Err(limit) = state.limits().check_client(client) {
        Err(refuse(
            &mut typed,
            limited_message(limit),
            StatusCode::TOO_MANY_REQUESTS,
        ))
    } else {
        validate_subscribe(&fields, &council.slug)
            .map_err(|m| refuse(&mut typed, m, StatusCode::BAD_REQUEST))
    };
    let request = match checked {
        Ok(request) => request,
        Err((typed, status)) => {
            return pages::render_council(
                &state,
                &council,
                &session,
                &typed,
                &RequestForm::default(),
                status,
            )
            .await;
        }
    };
    if let Err(limit) = state.limits().check_address(request.email.as_str()) {
        typed.error = Some(limited_message(limit));
        return pages::render_council(
            &state,
            &council,
            &session,
            &typed,
            &RequestForm::default(),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    }

    match subscriptions::subscribe(state.store(), state.settings(), &request, false).await {
        Ok(SubscribeOutcome::ConfirmationNeeded {
            subscriber_id,
            token,
            ..
        }) => {
            let confirm_url = state.public_url(&format!("/confirm/{token}"));
            state
                .mailer()
                .send_confirmation(&request.email, &council, &confirm_url)
                .await
                .map_err(|err| mail_failed(subscriber_id, &err))?;
            tracing::info!(subscriber_id, council = %council.slug, "confirmation mailed");
        }
        Ok(SubscribeOutcome::AlreadyConfirmed { subscriber_id })
        | Ok(SubscribeOutcome::Confirmed { subscriber_id }) => {
            tracing::info!(subscriber_id, council = %council.slug, "subscribe repeated");
        }
        Err(SubscriptionError::Suppressed) => {
            tracing::info!(council = %council.slug, "subscribe of a suppressed address ignored");
        }
        Err(err) => return Err(subscription_failed(err)),
    }

    let html = message_page(
        &state,
        "Check your e-mail",
        &[
            format!(
                "If {} can receive mail, a message with a link to confirm your subscription \
                 to {} is on its way.",
                request.email, council.name
            ),
            format!(
                "The subscription starts when you open the link and press the confirm button. \
                 The link works for {} hours. If nothing arrives, check your spam folder or \
                 subscribe again.",
                state.settings().tokens.confirmation_ttl_hours
            ),
        ],
        &[(
            format!("/councils/{}", council.slug),
            format!("Back to {}", council.name),
        )],
    )?;
    Ok(Html(html).into_response())
}

fn validate_subscribe(
    fields: &Fields,
    council: &CouncilSlug,
) -> Result<subscriptions::SubscribeRequest, String> {
    let email = parse_address(fields.get("email"))?;
    let kind = match fields.get("kind") {
        "" => SubscriberKind::Resident,
        raw => raw
            .parse::<SubscriberKind>()
            .map_err(|_| "Choose whether you subscribe as a resident or a professional.")?,
    };
    let organisation =
        security::single_line("Organisation", fields.get("organisation"), MAX_NAME_CHARS)
            .map_err(|p| format!("{p}."))?;
    Ok(subscriptions::SubscribeRequest {
        email,
        council: council.clone(),
        kind,
        organisation: Some(organisation).filter(|o| !o.is_empty()),
    })
}

fn mail_failed(subscriber_id: i64, err: &dyn std::error::Error) -> WebError {
    // An SMTP reply often quotes the recipient: the log gets it without addresses.
    let error = crate::mail::transport::redact_addresses(&error_chain(err));
    tracing::error!(subscriber_id, %error, "cannot send a form's e-mail");
    WebError::MailUnsent
}

fn subscription_failed(err: SubscriptionError) -> WebError {
    match err {
        SubscriptionError::Store(err) => WebError::Store(err),
        SubscriptionError::UnknownCouncil(_) => WebError::NotFound("council"),
        SubscriptionError::UnknownSubscriber => WebError::NotFound("subscriber"),
        other => WebError::Internal(other.to_string()),
    }
}

/// A page of a heading, paragraphs and links.
pub fn message_page(
    state: &AppState,
    heading: &str,
    paragraphs: &[String],
    links: &[(String, String)],
) -> Result<String, WebError> {
    let links: Vec<serde_json::Value> = links
        .iter()
        .map(|(href, text)| serde_json::json!({"href": href, "text": text}))
        .collect();
    let data = serde_json::json!({
        "heading": heading,
        "paragraphs": paragraphs,
        "links": links,
    });
    Ok(state.views().page("message", heading, &data)?)
}

/// `POST /councils/{slug}/request`: records an enablement request for operators and
/// acknowledges it by e-mail.
pub async fn request(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let fields = Fields::from_form(form)?;
    check_guard(&state, &headers, &fields)?;
    let council = pages::council_from_path(&state, &slug).await?;
    let session = FormSession::from_headers(&state, &headers);
    let mut typed = RequestForm {
        name: fields.get("name").to_owned(),
        organisation: fields.get("organisation").to_owned(),
        email: fields.get("email").to_owned(),
        message: fields.get("message").to_owned(),
        represents_council: !fields.get("represents_council").is_empty(),
        error: None,
    };

    let checked = if !fields.get(HONEYPOT_FIELD).is_empty() {
        Err((HONEYPOT_MESSAGE.to_owned(), StatusCode::BAD_REQUEST))
    } else if let Err(limit) = state.limits().check_client(client) {
        Err((limited_message(limit), StatusCode::TOO_MANY_REQUESTS))
    } else {
        match validate_request(&fields, &council.slug) {
            Ok(request) => match state.limits().check_address(request.email.as_str()) {
                Ok(()) => Ok(request),
                Err(limit) => Err((limited_message(limit), StatusCode::TOO_MANY_REQUESTS)),
            },
            Err(message) => Err((message, StatusCode::BAD_REQUEST)),
        }
    };
    let request = match checked {
        Ok(request) => request,
        Err((message, status)) => {
            typed.error = Some(message);
            return pages::render_council(
                &state,
                &council,
                &session,
                &SubscribeForm::default(),
                &typed,
                status,
            )
            .await;
        }
    };

    let created =
        crate::ranking::requests::create_request(state.store(), state.settings(), &request)
            .await
            .map_err(|err| WebError::Internal(error_chain(&err)))?;
    tracing::info!(request_id = created.id, council = %council.slug, "enablement request recorded");
    let acknowledged = match state
        .mailer()
        .send_request_ack(&request.email, &request.name, &council)
        .await
    {
        Ok(()) => format!(
            "We have sent an acknowledgement to {}, and will write again when the request is \
             decided.",
            request.email
        ),
        Err(err) => {
            // The request is recorded; asking again would only make a duplicate.
            let error = crate::mail::transport::redact_addresses(&error_chain(&err));
            tracing::error!(request_id = created.id, %error, "cannot acknowledge a request");
            format!(
                "We could not send the acknowledgement to {} just now, but the request is \
                 recorded all the same, and we will write when it is decided.",
                request.email
            )
        }
    };

    let html = message_page(
        &state,
        "Request received",
        &[
            format!(
                "Thank you. Your request for {} to be supported is recorded, and an operator \
                 will look at it.",
                council.name
            ),
            acknowledged,
        ],
        &[(
            format!("/councils/{}", council.slug),
            format!("Back to {}", council.name),
        )],
    )?;
    Ok(Html(html).into_response())
}

fn validate_request(
    fields: &Fields,
    council: &CouncilSlug,
) -> Result<crate::ranking::requests::NewRequest, String> {
    let name = security::single_line("Your name", fields.get("name"), MAX_NAME_CHARS)
        .map_err(|p| format!("{p}."))?;
    if name.is_empty() {
        return Err("Enter your name.".to_owned());
    }
    let organisation =
        security::single_line("Organisation", fields.get("organisation"), MAX_NAME_CHARS)
            .map_err(|p| format!("{p}."))?;
    let email = parse_address(fields.get("email"))?;
    let message = security::multi_line(
        "Why you need it",
        fields.get("message"),
        crate::ranking::requests::MAX_MESSAGE_CHARS,
    )
    .map_err(|p| format!("{p}."))?;
    if message.is_empty() {
        return Err("Tell us why you need the council supported.".to_owned());
    }
    Ok(crate::ranking::requests::NewRequest {
        council: council.clone(),
        name,
        organisation: Some(organisation).filter(|o| !o.is_empty()),
        email,
        message,
        represents_council: !fields.get("represents_council").is_empty(),
    })
}

/// The page for a confirmation token that cannot be used.
fn confirmation_refused(err: SubscriptionError) -> WebError {
    match err {
        SubscriptionError::InvalidToken
        | SubscriptionError::ExpiredToken
        | SubscriptionError::Suppressed
        | SubscriptionError::UnknownSubscriber => {
            tracing::info!(reason = %err, "confirmation link refused");
            WebError::NotFound("confirmation link")
        }
        other => subscription_failed(other),
    }
}

/// `GET /confirm/{token}`: a page with the button that confirms; nothing changes here.
pub async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (_subscriber_id, council) = subscriptions::pending_by_token(state.store(), &token)
        .await
        .map_err(confirmation_refused)?;
    let session = FormSession::from_headers(&state, &headers);
    let data = serde_json::json!({
        "action": format!("/confirm/{token}"),
        "guard": session.token(),
        "council_name": council.name,
    });
    let html = state
        .views()
        .page("confirm", "Confirm your subscription", &data)?;
    Ok(session.attach(Html(html).into_response()))
}

/// `POST /confirm/{token}`: confirms the subscription.
pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let fields = Fields::from_form(form)?;
    check_guard(&state, &headers, &fields)?;
    let outcome = subscriptions::confirm(state.store(), &token)
        .await
        .map_err(confirmation_refused)?;
    let (subscriber_id, council_id, heading) = match outcome {
        ConfirmOutcome::Confirmed {
            subscriber_id,
            council_id,
        } => (subscriber_id, council_id, "You are subscribed"),
        ConfirmOutcome::AlreadyConfirmed {
            subscriber_id,
            council_id,
        } => (subscriber_id, council_id, "You were already subscribed"),
    };
    let council = state.store().council_by_id(council_id).await?;
    let preferences = format!(
        "/preferences/{}",
        state
            .links()
            .sign(LinkPurpose::Preferences, &subscriber_id.to_string())
    );
    let when = match council.support {
        crate::domain::SupportLevel::Full => format!(
            "The weekly digest for {} comes every Monday morning.",
            council.name
        ),
        crate::domain::SupportLevel::Limited => format!(
            "Your subscription counts towards full support for {}; we will write the week it \
             starts.",
            council.name
        ),
    };
    let html = message_page(
        &state,
        heading,
        &[
            format!("Your subscription to {} is confirmed.", council.name),
            when,
        ],
        &[
            (preferences, "Change which councils you follow".to_owned()),
            (
                format!("/councils/{}", council.slug),
                format!("Back to {}", council.name),
            ),
        ],
    )?;
    Ok(Html(html).into_response())
}

/// The subscriber a preferences link is for.
fn preferences_subscriber(state: &AppState, token: &str) -> Result<i64, WebError> {
    state
        .links()
        .verify(LinkPurpose::Preferences, token)
        .and_then(|subject| subject.parse().ok())
        .ok_or(WebError::NotFound("preferences link"))
}

/// `GET /preferences/{token}`: the councils one follows, to change.
pub async fn preferences_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let subscriber_id = preferences_subscriber(&state, &token)?;
    let session = FormSession::from_headers(&state, &headers);
    render_preferences(
        &state,
        &session,
        &token,
        subscriber_id,
        None,
        None,
        StatusCode::OK,
    )
    .await
}

/// `POST /preferences/{token}`: follows exactly the councils ticked (and the one added).
pub async fn preferences_save(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, WebError> {
    let fields = Fields::from_form(form)?;
    check_guard(&state, &headers, &fields)?;
    let subscriber_id = preferences_subscriber(&state, &token)?;
    let session = FormSession::from_headers(&state, &headers);

    let mut slugs = Vec::new();
    for raw in fields.all("council").filter(|raw| !raw.is_empty()) {
        match raw.parse::<CouncilSlug>() {
            Ok(slug) => slugs.push(slug),
            Err(_) => {
                let problem = "One of the councils chosen does not exist; choose again.";
                return render_preferences(
                    &state,
                    &session,
                    &token,
                    subscriber_id,
                    None,
                    Some(problem.to_owned()),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        }
    }
    let changes = match subscriptions::set_followed_councils(
        state.store(),
        state.settings(),
        subscriber_id,
        &slugs,
    )
    .await
    {
        Ok(changes) => changes,
        Err(SubscriptionError::UnknownCouncil(slug)) => {
            return render_preferences(
                &state,
                &session,
                &token,
                subscriber_id,
                None,
                Some(format!("There is no council `{slug}`; choose again.")),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
        Err(SubscriptionError::Suppressed) => {
            return render_preferences(
                &state,
                &session,
                &token,
                subscriber_id,
                None,
                Some(SubscriptionError::Suppressed.to_string()),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
        Err(err) => return Err(subscription_failed(err)),
    };

    let view = subscriptions::subscriber_view(state.store(), subscriber_id)
        .await
        .map_err(subscription_failed)?;
    for added in &changes.added {
        let confirm_url = state.public_url(&format!("/confirm/{}", added.token));
        state
            .mailer()
            .send_confirmation(&view.email, &added.council, &confirm_url)
            .await
            .map_err(|err| mail_failed(subscriber_id, &err))?;
    }
    let mut notice = "Your councils are saved.".to_owned();
    if !changes.added.is_empty() {
        let names: Vec<&str> = changes
            .added
            .iter()
            .map(|a| a.council.name.as_str())
            .collect();
        notice.push_str(&format!(
            " We have sent a link to confirm each new council: {}.",
            names.join(", ")
        ));
    }
    render_preferences(
        &state,
        &session,
        &token,
        subscriber_id,
        Some(notice),
        None,
        StatusCode::OK,
    )
    .await
}

#[derive(Serialize)]
struct FollowedLine {
    slug: String,
    name: String,
    state: &'static str,
    support: &'static str,
}

async fn render_preferences(
    state: &AppState,
    session: &FormSession,
    token: &str,
    subscriber_id: i64,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let view = match subscriptions::subscriber_view(state.store(), subscriber_id).await {
        Ok(view) => view,
        Err(SubscriptionError::UnknownSubscriber) => {
            return Err(WebError::NotFound("preferences link"));
        }
        Err(err) => return Err(subscription_failed(err)),
    };
    let followed: Vec<FollowedLine> = view
        .subscriptions
        .iter()
        .filter(|(_, s)| *s != SubscriptionState::Unsubscribed)
        .map(|(council, s)| FollowedLine {
            slug: council.slug.to_string(),
            name: council.name.clone(),
            state: match s {
                SubscriptionState::Pending => "waiting for confirmation",
                _ => "confirmed",
            },
            support: council.support.as_str(),
        })
        .collect();
    let councils: Vec<serde_json::Value> = state
        .store()
        .list_councils(None, None)
        .await?
        .into_iter()
        .filter(|c| !followed.iter().any(|f| f.slug == c.slug.as_str()))
        .map(|c: Council| serde_json::json!({"slug": c.slug.as_str(), "name": c.name}))
        .collect();
    let unsubscribe = state
        .links()
        .sign(LinkPurpose::Unsubscribe, &subscriber_id.to_string());
    let data = serde_json::json!({
        "action": format!("/preferences/{token}"),
        "guard": session.token(),
        "followed": followed,
        "councils": councils,
        "unsubscribe_action": format!("/unsubscribe/{unsubscribe}"),
        "notice": notice,
        "error": error,
    });
    let html = state
        .views()
        .page("preferences", "Your subscriptions", &data)?;
    Ok(session.attach((status, Html(html)).into_response()))
}

/// The subscriber an unsubscribe link is for.
fn unsubscribe_subscriber(state: &AppState, token: &str) -> Result<i64, WebError> {
    state
        .links()
        .verify(LinkPurpose::Unsubscribe, token)
        .and_then(|subject| subject.parse().ok())
        .ok_or(WebError::NotFound("unsubscribe link"))
}

/// `GET /unsubscribe/{token}`: a page with the button; nothing changes here.
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    unsubscribe_subscriber(&state, &token)?;
    let data = serde_json::json!({ "action": format!("/unsubscribe/{token}") });
    let html = state.views().page("unsubscribe", "Unsubscribe", &data)?;
    Ok(Html(html).into_response())
}

/// `POST /unsubscribe/{token}`: unsubscribes from everything. This is also the RFC 8058
/// one-click URL, so it needs no cookie or form token and accepts any body: the signed token
/// is the authority. Never rate limited.
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let subscriber_id = unsubscribe_subscriber(&state, &token)?;
    match subscriptions::unsubscribe_all(state.store(), subscriber_id).await {
        Ok(_) | Err(SubscriptionError::UnknownSubscriber) => {}
        Err(err) => return Err(subscription_failed(err)),
    }
    let html = message_page(
        &state,
        "You are unsubscribed",
        &[
            "You will get no more e-mails from Council Digest.".to_owned(),
            "Changed your mind? Subscribe again from any council’s page.".to_owned(),
        ],
        &[("/".to_owned(), "Find a council".to_owned())],
    )?;
    Ok(Html(html).into_response())
}
