//! Well-formed messages: multipart/alternative (text, then HTML), From, Reply-To, Date,
//! Message-ID and List-Id on every message; on digests and notices also `List-Unsubscribe`
//! (an https URL and, when configured, a mailto) with `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click` (RFC 8058). The confirmation e-mail has no one-click header:
//! there is no subscription to leave yet.
//!
//! lettre encodes non-ASCII header text per RFC 2047 and folds long headers, so no header line
//! exceeds 998 octets. Messages are rendered when they are sent; nothing rendered is stored.

use std::collections::HashMap;
use std::sync::Arc;

use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{ContentTransferEncoding, Header, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::Clock;
use crate::digest::contents::{DigestContents, DigestRecord, SharedSection};
use crate::digest::view::{DigestLinks, digest_view};
use crate::domain::EmailAddress;
use crate::mail::MailError;
use crate::mail::body::{SplicedBody, crlf_line_endings};
use crate::mail::templates::{MailTemplate, RenderedParts, Renderer, SharedRendering, escape_html};
use crate::settings::Settings;
use crate::store::councils::Council;
use crate::store::ledger::ClaimedDelivery;
use crate::store::{StepContext, Store};
use crate::tokens::{LinkPurpose, SigningKey};

/// What every message needs from the settings, prepared once.
#[derive(Clone)]
pub struct MailContext {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// The List-Id identifier, without angle brackets.
    pub list_id: String,
    /// `web.base_url` without a trailing slash.
    pub base_url: String,
    pub unsubscribe_mailto: Option<EmailAddress>,
    pub signing_key: SigningKey,
    pub dkim: Option<Arc<DkimConfig>>,
    /// The right-hand side of Message-IDs: the sender's domain.
    pub message_id_domain: String,
    pub confirmation_ttl_hours: u32,
    /// The time put in Date headers.
    pub clock: Clock,
}

impl std::fmt::Debug for MailContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailContext")
            .field("from", &self.from.email.domain())
            .field("list_id", &self.list_id)
            .field("base_url", &self.base_url)
            .field("dkim", &self.dkim.is_some())
            .finish_non_exhaustive()
    }
}

impl MailContext {
    /// Prepares the sender, list headers and DKIM key named by the settings.
    pub fn new(
        settings: &Settings,
        signing_key: SigningKey,
        clock: Clock,
    ) -> Result<MailContext, MailError> {
        let mail = &settings.mail;
        let from: Mailbox = mail.from.parse().map_err(|err| MailError::Address {
            field: "mail.from",
            detail: format!("{err}"),
        })?;
        let reply_to = match mail.reply_to.trim() {
            "" => None,
            raw => Some(raw.parse::<Mailbox>().map_err(|err| MailError::Address {
                field: "mail.reply_to",
                detail: format!("{err}"),
            })?),
        };
        let unsubscribe_mailto = match mail.unsubscribe_mailto.trim() {
            "" => None,
            raw => Some(
                raw.parse::<EmailAddress>()
                    .map_err(|err| MailError::Address {
                        field: "mail.unsubscribe_mailto",
                        detail: err.to_string(),
                    })?,
            ),
        };
        let dkim = load_dkim(settings)?.map(Arc::new);
        Ok(MailContext {
            message_id_domain: from.email.domain().to_owned(),
            from,
            reply_to,
            list_id: mail.list_id.trim().to_owned(),
            base_url: settings.web.base_url.trim_end_matches('/').to_owned(),
            unsubscribe_mailto,
            signing_key,
            dkim,
            confirmation_ttl_hours: settings.tokens.confirmation_ttl_hours,
            clock,
        })
    }

    /// The web page that unsubscribes (and accepts the one-click POST).
    pub fn unsubscribe_url(&self, subscriber_id: i64) -> String {
        let token = self
            .signing_key
            .sign(LinkPurpose::Unsubscribe, &subscriber_id.to_string());
        format!("{}/unsubscribe/{token}", self.base_url)
    }

    pub fn preferences_url(&self, subscriber_id: i64) -> String {
        let token = self
            .signing_key
            .sign(LinkPurpose::Preferences, &subscriber_id.to_string());
        format!("{}/preferences/{token}", self.base_url)
    }

    /// The web view of a digest, `/digests/{token}`.
    pub fn digest_url(&self, digest_id: i64) -> String {
        let token = self
            .signing_key
            .sign(LinkPurpose::DigestView, &digest_id.to_string());
        format!("{}/digests/{token}", self.base_url)
    }

    /// A council's page, where limited councils can be requested.
    pub fn council_url(&self, council: &Council) -> String {
        format!("{}/councils/{}", self.base_url, council.slug)
    }

    /// The links a digest for `subscriber_id` carries.
    pub fn digest_links(&self, subscriber_id: i64, digest_id: Option<i64>) -> DigestLinks {
        DigestLinks {
            unsubscribe_url: self.unsubscribe_url(subscriber_id),
            preferences_url: self.preferences_url(subscriber_id),
            web_view_url: digest_id.map(|id| self.digest_url(id)),
            base_url: self.base_url.clone(),
        }
    }

    /// `List-Unsubscribe` value: the https form first, then the mailto form when configured.
    fn list_unsubscribe(&self, subscriber_id: i64) -> String {
        let url = self.unsubscribe_url(subscriber_id);
        match &self.unsubscribe_mailto {
            Some(mailto) => format!("<{url}>, <mailto:{mailto}?subject=unsubscribe>"),
            None => format!("<{url}>"),
        }
    }
}

/// Reads the DKIM key when all three `mail.dkim_*` settings are set.
fn load_dkim(settings: &Settings) -> Result<Option<DkimConfig>, MailError> {
    let mail = &settings.mail;
    let (selector, domain, key_file) = (
        mail.dkim_selector.trim(),
        mail.dkim_domain.trim(),
        mail.dkim_private_key_file.trim(),
    );
    if selector.is_empty() && domain.is_empty() && key_file.is_empty() {
        return Ok(None);
    }
    if selector.is_empty() || domain.is_empty() || key_file.is_empty() {
        return Err(MailError::Dkim(
            "mail.dkim_selector, mail.dkim_domain and mail.dkim_private_key_file must be set \
             together"
                .to_owned(),
        ));
    }
    let pem = std::fs::read_to_string(key_file)
        .map_err(|err| MailError::Dkim(format!("mail.dkim_private_key_file {key_file}: {err}")))?;
    let key = dkim_key_from_text(&pem).map_err(|detail| {
        MailError::Dkim(format!("mail.dkim_private_key_file {key_file}: {detail}"))
    })?;
    let headers = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "MIME-Version",
        "Content-Type",
    ]
    .into_iter()
    .map(HeaderName::new_from_ascii_str)
    .collect();
    Ok(Some(DkimConfig::new(
        selector.to_owned(),
        domain.to_owned(),
        key,
        headers,
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    )))
}

/// The DER prefix of a PKCS#8 Ed25519 private key (RFC 8410); the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An RSA key in PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`); an Ed25519 key in PKCS#8 PEM (as
/// `openssl genpkey -algorithm ed25519` writes it); or an Ed25519 key as the base64 of its
/// 32-byte seed.
fn dkim_key_from_text(text: &str) -> Result<DkimSigningKey, String> {
    use base64::Engine as _;
    if text.contains("BEGIN RSA PRIVATE KEY") {
        return DkimSigningKey::new(text, DkimSigningAlgorithm::Rsa)
            .map_err(|err| format!("not a PKCS#1 RSA private key: {err}"));
    }
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let body = body.trim();
    if text.contains("BEGIN PRIVATE KEY") {
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|err| format!("a PKCS#8 key that is not valid base64: {err}"))?;
        let seed = der
            .strip_prefix(&PKCS8_ED25519_PREFIX[..])
            .filter(|seed| seed.len() == 32)
            .ok_or_else(|| {
                "a PKCS#8 key that is not Ed25519; give an RSA key in PKCS#1 form \
                 (`openssl rsa -traditional`)"
                    .to_owned()
            })?;
        let seed = base64::engine::general_purpose::STANDARD.encode(seed);
        return DkimSigningKey::new(&seed, DkimSigningAlgorithm::Ed25519)
            .map_err(|err| format!("not a usable Ed25519 key: {err}"));
    }
    DkimSigningKey::new(body, DkimSigningAlgorithm::Ed25519)
        .map_err(|err| format!("not an Ed25519 seed in base64: {err}"))
}

/// `List-Id: <weekly.council-digest.example>`.
#[derive(Debug, Clone)]
struct ListId(String);

impl Header for ListId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Id")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListId(s.to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe: <https://...>, <mailto:...>` (RFC 2369).
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

/// A message ready for a transport, with what the ledger records of it.
#[derive(Debug, Clone)]
pub struct RenderedMessage {
    pub message: Message,
    pub to: EmailAddress,
    /// The Message-ID header value, angle brackets included.
    pub message_id: String,
}

/// A message's subject and its two bodies, each as text for lettre to encode or already
/// encoded.
struct MessageParts {
    subject: String,
    text: Body,
    html: Body,
}

impl From<RenderedParts> for MessageParts {
    fn from(parts: RenderedParts) -> MessageParts {
        MessageParts {
            subject: parts.subject,
            text: Body::new(crlf_line_endings(parts.text)),
            html: Body::new(crlf_line_endings(parts.html)),
        }
    }
}

/// Puts rendered parts into a message with the standard headers.
fn assemble(
    ctx: &MailContext,
    to: &EmailAddress,
    parts: impl Into<MessageParts>,
    message_id: &str,
    unsubscribe_for: Option<i64>,
) -> Result<Message, MailError> {
    let recipient: Mailbox = to.as_str().parse().map_err(|err| MailError::Address {
        field: "recipient",
        detail: format!("{err}"),
    })?;
    let parts = parts.into();
    let mut builder = Message::builder()
        .from(ctx.from.clone())
        .to(recipient)
        .subject(parts.subject)
        .date(std::time::SystemTime::from(ctx.clock.now()))
        .message_id(Some(message_id.to_owned()))
        .header(ListId(format!("<{}>", ctx.list_id)));
    if let Some(reply_to) = &ctx.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    if let Some(subscriber_id) = unsubscribe_for {
        builder = builder
            .header(ListUnsubscribe(ctx.list_unsubscribe(subscriber_id)))
            .header(ListUnsubscribePost);
    }
    let mut message =
        builder.multipart(MultiPart::alternative_plain_html(parts.text, parts.html))?;
    if let Some(dkim) = &ctx.dkim {
        message.sign(dkim);
    }
    Ok(message)
}

/// A Message-ID that stays the same when the same delivery is rendered again for a retry.
fn delivery_message_id(ctx: &MailContext, kind: &str, delivery_id: i64, key: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{key}", ctx.list_id).as_bytes());
    format!(
        "<{kind}.{delivery_id}.{}@{}>",
        hex::encode(&digest[..8]),
        ctx.message_id_domain
    )
}

fn fresh_message_id(ctx: &MailContext, kind: &str) -> String {
    format!(
        "<{kind}.{}@{}>",
        crate::tokens::random_token(),
        ctx.message_id_domain
    )
}

#[derive(Serialize)]
struct CouncilModel<'a> {
    name: &'a str,
    slug: &'a str,
}

impl<'a> CouncilModel<'a> {
    fn of(council: &'a Council) -> CouncilModel<'a> {
        CouncilModel {
            name: &council.name,
            slug: council.slug.as_str(),
        }
    }
}

#[derive(Serialize)]
struct ConfirmationModel<'a> {
    council: CouncilModel<'a>,
    confirm_url: &'a str,
    expires_hours: u32,
    links: Option<DigestLinks>,
}

/// The double opt-in e-mail for a pending subscription. It carries no List-Unsubscribe.
pub fn confirmation_message(
    ctx: &MailContext,
    renderer: &Renderer,
    to: &EmailAddress,
    council: &Council,
    confirm_url: &str,
) -> Result<Message, MailError> {
    let model = ConfirmationModel {
        council: CouncilModel::of(council),
        confirm_url,
        expires_hours: ctx.confirmation_ttl_hours,
        links: None,
    };
    let parts = renderer.render(MailTemplate::Confirmation, &model)?;
    assemble(ctx, to, parts, &fresh_message_id(ctx, "confirm"), None)
}

#[derive(Serialize)]
struct RequestAckModel<'a> {
    council: CouncilModel<'a>,
    requester_name: Option<&'a str>,
    council_url: String,
    links: Option<DigestLinks>,
}

/// The acknowledgement of a professional's request to enable a council.
pub fn request_ack_message(
    ctx: &MailContext,
    renderer: &Renderer,
    to: &EmailAddress,
    council: &Council,
    requester_name: Option<&str>,
) -> Result<Message, MailError> {
    let model = RequestAckModel {
        council: CouncilModel::of(council),
        requester_name: requester_name.map(str::trim).filter(|n| !n.is_empty()),
        council_url: ctx.council_url(council),
        links: None,
    };
    let parts = renderer.render(MailTemplate::RequestAck, &model)?;
    assemble(ctx, to, parts, &fresh_message_id(ctx, "request"), None)
}

#[derive(Serialize)]
struct SupportNoticeModel<'a> {
    council: CouncilModel<'a>,
    council_url: String,
    links: DigestLinks,
}

/// One row of the ledger, as the renderer needs it.
struct DeliveryRow {
    dedupe_key: String,
    kind: String,
    subscriber_id: Option<i64>,
    digest_id: Option<i64>,
    payload: String,
}

async fn delivery_row(store: &Store, delivery_id: i64) -> Result<DeliveryRow, MailError> {
    let row = sqlx::query(
        "SELECT dedupe_key, kind, subscriber_id, digest_id, payload FROM deliveries WHERE id = $1",
    )
    .bind(delivery_id)
    .fetch_optional(store.pool())
    .await
    .step("read a delivery to render")?
    .ok_or_else(|| MailError::NotFound(format!("delivery {delivery_id}")))?;
    let decode = |err: sqlx::Error| MailError::Corrupt {
        what: format!("delivery {delivery_id}"),
        detail: err.to_string(),
    };
    Ok(DeliveryRow {
        dedupe_key: row.try_get("dedupe_key").map_err(decode)?,
        kind: row.try_get("kind").map_err(decode)?,
        subscriber_id: row.try_get("subscriber_id").map_err(decode)?,
        digest_id: row.try_get("digest_id").map_err(decode)?,
        payload: row.try_get("payload").map_err(decode)?,
    })
}

/// The address of a subscriber that can still be written to.
async fn subscriber_address(store: &Store, subscriber_id: i64) -> Result<EmailAddress, MailError> {
    let row = sqlx::query("SELECT email FROM subscribers WHERE id = $1")
        .bind(subscriber_id)
        .fetch_optional(store.pool())
        .await
        .step("read a subscriber's address")?
        .ok_or_else(|| MailError::NotFound(format!("subscriber {subscriber_id}")))?;
    let email: Option<String> = row.try_get("email").step("decode a subscriber's address")?;
    let email = email
        .ok_or_else(|| MailError::NotFound(format!("the address of subscriber {subscriber_id}")))?;
    email
        .parse()
        .map_err(|err: crate::domain::ParseError| MailError::Corrupt {
            what: format!("subscriber {subscriber_id}"),
            detail: err.to_string(),
        })
}

/// A stored digest: its subscriber and what it included, put back together from its record
/// and the council sections it refers to.
pub(crate) async fn stored_digest(
    store: &Store,
    digest_id: i64,
) -> Result<(Option<i64>, DigestContents), MailError> {
    let corrupt = |what: String| {
        move |err: serde_json::Error| MailError::Corrupt {
            what,
            detail: err.to_string(),
        }
    };
    let row = sqlx::query("SELECT subscriber_id, contents FROM digests WHERE id = $1")
        .bind(digest_id)
        .fetch_optional(store.pool())
        .await
        .step("read a digest")?
        .ok_or_else(|| MailError::NotFound(format!("digest {digest_id}")))?;
    let subscriber_id: Option<i64> = row.try_get("subscriber_id").step("decode a digest")?;
    let contents: String = row.try_get("contents").step("decode a digest")?;
    let record: DigestRecord =
        serde_json::from_str(&contents).map_err(corrupt(format!("digest {digest_id}")))?;

    let mut shared = Vec::with_capacity(record.councils.len());
    for reference in &record.councils {
        let id = reference.section_id;
        let row = sqlx::query("SELECT contents FROM digest_sections WHERE id = $1")
            .bind(id)
            .fetch_optional(store.pool())
            .await
            .step("read a digest section")?
            .ok_or_else(|| MailError::NotFound(format!("digest section {id}")))?;
        let text: String = row.try_get("contents").step("decode a digest section")?;
        let section: SharedSection =
            serde_json::from_str(&text).map_err(corrupt(format!("digest section {id}")))?;
        shared.push(section);
    }
    Ok((subscriber_id, record.into_contents(shared)))
}

/// Renders the message of one queued delivery for its subscriber, as it stands now.
///
/// Kinds: `digest` (with `digest_id`), and the notices `promoted` / `demoted` (payload
/// `{"council_id": N}`).
pub async fn render_delivery(
    store: &Store,
    _settings: &Settings,
    renderer: &Renderer,
    ctx: &MailContext,
    delivery_id: i64,
) -> Result<RenderedMessage, MailError> {
    let row = delivery_row(store, delivery_id).await?;
    let subscriber_id = row
        .subscriber_id
        .ok_or_else(|| MailError::NotFound(format!("the subscriber of delivery {delivery_id}")))?;
    let to = subscriber_address(store, subscriber_id).await?;
    let message_id = delivery_message_id(ctx, &row.kind, delivery_id, &row.dedupe_key);

    let parts = match row.kind.as_str() {
        "digest" => {
            let digest_id = row.digest_id.ok_or_else(|| {
                MailError::NotFound(format!("the digest of delivery {delivery_id}"))
            })?;
            let (_, contents) = stored_digest(store, digest_id).await?;
            let view = digest_view(&contents, ctx.digest_links(subscriber_id, Some(digest_id)));
            renderer.render(MailTemplate::Digest, &view)?
        }
        kind @ ("promoted" | "demoted") => {
            let payload: serde_json::Value =
                serde_json::from_str(&row.payload).map_err(|err| MailError::Corrupt {
                    what: format!("payload of delivery {delivery_id}"),
                    detail: err.to_string(),
                })?;
            let council_id = payload["council_id"]
                .as_i64()
                .ok_or_else(|| MailError::Corrupt {
                    what: format!("payload of delivery {delivery_id}"),
                    detail: "no council_id".to_owned(),
                })?;
            let council = store.council_by_id(council_id).await?;
            let model = SupportNoticeModel {
                council: CouncilModel::of(&council),
                council_url: ctx.council_url(&council),
                links: ctx.digest_links(subscriber_id, None),
            };
            let template = if kind == "promoted" {
                MailTemplate::Promoted
            } else {
                MailTemplate::Demoted
            };
            renderer.render(template, &model)?
        }
        other => {
            return Err(MailError::Corrupt {
                what: format!("delivery {delivery_id}"),
                detail: format!("unknown kind `{other}`"),
            });
        }
    };
    let message = assemble(ctx, &to, parts, &message_id, Some(subscriber_id))?;
    Ok(RenderedMessage {
        message,
        to,
        message_id,
    })
}

/// Renders a digest's e-mail from its contents without a stored delivery (dry runs).
pub fn digest_message(
    ctx: &MailContext,
    renderer: &Renderer,
    to: &EmailAddress,
    subscriber_id: i64,
    digest_id: Option<i64>,
    contents: &DigestContents,
) -> Result<RenderedMessage, MailError> {
    let view = digest_view(contents, ctx.digest_links(subscriber_id, digest_id));
    let parts = renderer.render(MailTemplate::Digest, &view)?;
    let message_id = fresh_message_id(ctx, "digest");
    let message = assemble(ctx, to, parts, &message_id, Some(subscriber_id))?;
    Ok(RenderedMessage {
        message,
        to: to.clone(),
        message_id,
    })
}

/// Bind parameters per `IN (...)` list when reading a batch.
const IDS_PER_QUERY: usize = 500;

/// Renders a claimed batch of deliveries, each exactly as [`render_delivery`] renders it, in
/// the batch's order. The batch's subscribers, digests and council sections are read in a few
/// queries for the whole batch (each council section is decoded once however many digests
/// share it), and the templates run on every core when the runtime has several threads.
/// Notices, and every delivery of a batch whose reads fail, are rendered one at a time.
pub async fn render_claimed(
    store: &Store,
    settings: &Settings,
    renderer: &Renderer,
    ctx: &MailContext,
    batch: &[ClaimedDelivery],
) -> Vec<Result<RenderedMessage, MailError>> {
    let digests = batch.iter().filter(|d| d.kind == "digest");
    let inputs = match read_digest_inputs(store, digests).await {
        Ok(inputs) => inputs,
        Err(err) => {
            tracing::warn!(error = %err, "reading a batch to render failed; rendering one by one");
            let mut out = Vec::with_capacity(batch.len());
            for delivery in batch {
                out.push(render_delivery(store, settings, renderer, ctx, delivery.id).await);
            }
            return out;
        }
    };

    let jobs: Vec<ClaimedDelivery> = batch
        .iter()
        .filter(|d| d.kind == "digest")
        .cloned()
        .collect();
    let mut rendered = render_in_parallel(ctx, renderer, inputs, jobs)
        .await
        .into_iter();
    let mut out = Vec::with_capacity(batch.len());
    for delivery in batch {
        let done = match delivery.kind.as_str() {
            "digest" => rendered.next(),
            _ => None,
        };
        match done {
            Some(result) => out.push(result),
            None => out.push(render_delivery(store, settings, renderer, ctx, delivery.id).await),
        }
    }
    out
}

/// What a batch of digest deliveries needs from the store, read in a few queries.
#[derive(Default)]
struct DigestInputs {
    /// Subscriber id to stored address (`None` when it has been erased).
    addresses: HashMap<i64, Option<String>>,
    /// Digest id to its subscriber's record.
    records: HashMap<i64, Result<DigestRecord, String>>,
    /// Section id to the council's shared part and its content hash.
    sections: HashMap<i64, Result<(String, SharedSection), String>>,
}

async fn read_digest_inputs<'a>(
    store: &Store,
    digests: impl Iterator<Item = &'a ClaimedDelivery>,
) -> Result<DigestInputs, MailError> {
    let mut subscriber_ids = Vec::new();
    let mut digest_ids = Vec::new();
    for delivery in digests {
        subscriber_ids.extend(delivery.subscriber_id);
        digest_ids.extend(delivery.digest_id);
    }
    let mut inputs = DigestInputs::default();
    for row in rows_by_id(store, "SELECT id, email FROM subscribers", &subscriber_ids).await? {
        let id: i64 = row.try_get("id").step("decode a subscriber's address")?;
        let email: Option<String> = row.try_get("email").step("decode a subscriber's address")?;
        inputs.addresses.insert(id, email);
    }
    let mut section_ids = Vec::new();
    for row in rows_by_id(store, "SELECT id, contents FROM digests", &digest_ids).await? {
        let id: i64 = row.try_get("id").step("decode a digest")?;
        let text: String = row.try_get("contents").step("decode a digest")?;
        let record = serde_json::from_str::<DigestRecord>(&text).map_err(|e| e.to_string());
        if let Ok(record) = &record {
            section_ids.extend(record.councils.iter().map(|c| c.section_id));
        }
        inputs.records.insert(id, record);
    }
    section_ids.sort_unstable();
    section_ids.dedup();
    let sql = "SELECT id, content_hash, contents FROM digest_sections";
    for row in rows_by_id(store, sql, &section_ids).await? {
        let id: i64 = row.try_get("id").step("decode a digest section")?;
        let hash: String = row
            .try_get("content_hash")
            .step("decode a digest section")?;
        let text: String = row.try_get("contents").step("decode a digest section")?;
        let section = serde_json::from_str::<SharedSection>(&text)
            .map(|section| (hash, section))
            .map_err(|e| e.to_string());
        inputs.sections.insert(id, section);
    }
    Ok(inputs)
}

/// `select` (a query without a WHERE clause) for the rows whose `id` is in `ids`.
async fn rows_by_id(
    store: &Store,
    select: &str,
    ids: &[i64],
) -> Result<Vec<sqlx::any::AnyRow>, MailError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("{select} WHERE id IN ({})", placeholders.join(", "));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        rows.extend(
            query
                .fetch_all(store.pool())
                .await
                .step("read a batch of messages to render")?,
        );
    }
    Ok(rows)
}

/// One digest delivery of a batch, from what the batch read; the same message, and the same
/// errors, as [`render_delivery`].
fn render_digest_delivery(
    ctx: &MailContext,
    renderer: &Renderer,
    delivery: &ClaimedDelivery,
    inputs: &DigestInputs,
) -> Result<RenderedMessage, MailError> {
    let id = delivery.id;
    let subscriber_id = delivery
        .subscriber_id
        .ok_or_else(|| MailError::NotFound(format!("the subscriber of delivery {id}")))?;
    let email = inputs
        .addresses
        .get(&subscriber_id)
        .ok_or_else(|| MailError::NotFound(format!("subscriber {subscriber_id}")))?
        .as_deref()
        .ok_or_else(|| MailError::NotFound(format!("the address of subscriber {subscriber_id}")))?;
    let to: EmailAddress =
        email
            .parse()
            .map_err(|err: crate::domain::ParseError| MailError::Corrupt {
                what: format!("subscriber {subscriber_id}"),
                detail: err.to_string(),
            })?;
    let message_id = delivery_message_id(ctx, &delivery.kind, id, &delivery.dedupe_key);

    let digest_id = delivery
        .digest_id
        .ok_or_else(|| MailError::NotFound(format!("the digest of delivery {id}")))?;
    let record = inputs
        .records
        .get(&digest_id)
        .ok_or_else(|| MailError::NotFound(format!("digest {digest_id}")))?
        .as_ref()
        .map_err(|detail| MailError::Corrupt {
            what: format!("digest {digest_id}"),
            detail: detail.clone(),
        })?;
    let mut sections = Vec::with_capacity(record.councils.len());
    for reference in &record.councils {
        let section_id = reference.section_id;
        let section = inputs
            .sections
            .get(&section_id)
            .ok_or_else(|| MailError::NotFound(format!("digest section {section_id}")))?
            .as_ref()
            .map_err(|detail| MailError::Corrupt {
                what: format!("digest section {section_id}"),
                detail: detail.clone(),
            })?;
        sections.push(section);
    }
    let links = ctx.digest_links(subscriber_id, Some(digest_id));
    let parts = shared_digest_parts(ctx, renderer, record, &sections, links)?;
    let message = assemble(ctx, &to, parts, &message_id, Some(subscriber_id))?;
    Ok(RenderedMessage {
        message,
        to,
        message_id,
    })
}

/// The stand-ins rendered in place of a recipient's own links in a shared rendering.
const STAND_IN_START: char = '\u{2}';
const STAND_IN_UNSUBSCRIBE: &str = "\u{2}unsubscribe-url\u{3}";
const STAND_IN_PREFERENCES: &str = "\u{2}preferences-url\u{3}";
const STAND_IN_WEB_VIEW: &str = "\u{2}web-view-url\u{3}";

/// A digest's parts for one recipient. Recipients whose digests were built from the same
/// council sections, changes and limited-support blocks differ only in their links, so the
/// digest is rendered once with stand-ins for the links, kept in the renderer's shared
/// renderings, and each recipient's links are put in place of the stand-ins (escaped for the
/// HTML part, as the HTML templates escape every value). The first time a rendering is
/// shared it is checked against a rendering of its own; a template that does anything with a
/// link but print it turns sharing off.
fn shared_digest_parts(
    ctx: &MailContext,
    renderer: &Renderer,
    record: &DigestRecord,
    sections: &[&(String, SharedSection)],
    links: DigestLinks,
) -> Result<MessageParts, MailError> {
    let contents = || {
        let shared = sections
            .iter()
            .map(|(_, section)| section.clone())
            .collect();
        record.clone().into_contents(shared)
    };
    let shared = renderer.shared();
    let key = shared
        .splicable()
        .then(|| shared_render_key(ctx, record, sections))
        .flatten();
    let Some(key) = key else {
        let own = renderer.render(MailTemplate::Digest, &digest_view(&contents(), links))?;
        return Ok(own.into());
    };
    if let Some(rendering) = shared.get(&key) {
        return Ok(spliced_parts(&rendering, &links));
    }

    let contents = contents();
    let own =
        with_crlf(renderer.render(MailTemplate::Digest, &digest_view(&contents, links.clone()))?);
    let stand_in_links = DigestLinks {
        unsubscribe_url: STAND_IN_UNSUBSCRIBE.to_owned(),
        preferences_url: STAND_IN_PREFERENCES.to_owned(),
        web_view_url: Some(STAND_IN_WEB_VIEW.to_owned()),
        base_url: links.base_url.clone(),
    };
    let stand_in = with_crlf(renderer.render(
        MailTemplate::Digest,
        &digest_view(&contents, stand_in_links),
    )?);
    let splicable = put_links_in(&stand_in, &links) == own;
    let own = MessageParts::from(own);
    if splicable {
        shared.insert(key, shared_rendering(stand_in, &own, &links));
    } else {
        tracing::warn!("the digest templates use links in a way renderings cannot share");
        shared.mark_unsplicable();
    }
    Ok(own)
}

fn with_crlf(parts: RenderedParts) -> RenderedParts {
    RenderedParts {
        subject: parts.subject,
        text: crlf_line_endings(parts.text),
        html: crlf_line_endings(parts.html),
    }
}

/// A shared rendering of `stand_in`, with each body encoded once where lettre encoded `own` (a
/// real recipient's message, with `links`) as quoted-printable and where the spliced encoding
/// gives exactly lettre's bytes for it.
fn shared_rendering(
    stand_in: RenderedParts,
    own: &MessageParts,
    links: &DigestLinks,
) -> SharedRendering {
    let spliced = |stand_in: &str, own: &Body, html: bool| {
        if own.encoding() != ContentTransferEncoding::QuotedPrintable {
            return None;
        }
        let body = SplicedBody::new(stand_in, has_stand_in);
        let filled = body.body(|line| fill_links(line, links, html));
        if filled.as_ref() == own.as_ref() {
            Some(body)
        } else {
            tracing::debug!("a spliced body differs from lettre's encoding; not used");
            None
        }
    };
    SharedRendering {
        text: spliced(&stand_in.text, &own.text, false),
        html: spliced(&stand_in.html, &own.html, true),
        parts: stand_in,
    }
}

/// One recipient's message parts from a shared rendering.
fn spliced_parts(rendering: &SharedRendering, links: &DigestLinks) -> MessageParts {
    let body = |spliced: &Option<SplicedBody>, text: &str, html: bool| match spliced {
        Some(spliced) => spliced.body(|line| fill_links(line, links, html)),
        None => Body::new(fill_links(text, links, html)),
    };
    MessageParts {
        subject: fill_links(&rendering.parts.subject, links, false),
        text: body(&rendering.text, &rendering.parts.text, false),
        html: body(&rendering.html, &rendering.parts.html, true),
    }
}

/// Everything a digest's rendering depends on besides the recipient's links: the sender's
/// base URL, the week and window, each council section (by content hash) with the
/// recipient's changes, and the limited-support blocks.
fn shared_render_key(
    ctx: &MailContext,
    record: &DigestRecord,
    sections: &[&(String, SharedSection)],
) -> Option<String> {
    let councils: Vec<(&str, &Vec<crate::digest::contents::ChangeEntry>)> = sections
        .iter()
        .zip(&record.councils)
        .map(|((hash, _), reference)| (hash.as_str(), &reference.changes))
        .collect();
    serde_json::to_string(&(
        &ctx.base_url,
        &record.week,
        record.week_start,
        record.window_start,
        record.window_end,
        councils,
        &record.limited,
    ))
    .ok()
}

fn has_stand_in(text: &str) -> bool {
    text.contains(STAND_IN_START)
}

/// `text` with one recipient's links in place of the stand-ins, escaped for HTML when `html`.
fn fill_links(text: &str, links: &DigestLinks, html: bool) -> String {
    if !has_stand_in(text) {
        return text.to_owned();
    }
    let web_view = links.web_view_url.as_deref().unwrap_or_default();
    let link = |url: &str| {
        if html {
            escape_html(url)
        } else {
            url.to_owned()
        }
    };
    text.replace(STAND_IN_UNSUBSCRIBE, &link(&links.unsubscribe_url))
        .replace(STAND_IN_PREFERENCES, &link(&links.preferences_url))
        .replace(STAND_IN_WEB_VIEW, &link(web_view))
}

/// A shared rendering with one recipient's links in place of the stand-ins.
fn put_links_in(stand_in: &RenderedParts, links: &DigestLinks) -> RenderedParts {
    RenderedParts {
        subject: fill_links(&stand_in.subject, links, false),
        text: fill_links(&stand_in.text, links, false),
        html: fill_links(&stand_in.html, links, true),
    }
}

/// The digest deliveries `jobs`, rendered in order on the blocking threads, split in one
/// share per core, so the caller's task (and the sends it drives) goes on meanwhile.
async fn render_in_parallel(
    ctx: &MailContext,
    renderer: &Renderer,
    inputs: DigestInputs,
    jobs: Vec<ClaimedDelivery>,
) -> Vec<Result<RenderedMessage, MailError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = jobs.len().div_ceil(threads).max(1);
    let shared = Arc::new((ctx.clone(), renderer.clone(), inputs));
    let mut shares = Vec::with_capacity(threads);
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let share: Vec<ClaimedDelivery> = jobs.by_ref().take(per_thread).collect();
        let count = share.len();
        let shared = Arc::clone(&shared);
        let handle = tokio::task::spawn_blocking(move || {
            let (ctx, renderer, inputs) = &*shared;
            share
                .iter()
                .map(|delivery| render_digest_delivery(ctx, renderer, delivery, inputs))
                .collect::<Vec<_>>()
        });
        shares.push((count, handle));
    }
    let mut out = Vec::new();
    for (count, handle) in shares {
        match handle.await {
            Ok(part) => out.extend(part),
            Err(err) => out.extend((0..count).map(|_| {
                Err(MailError::Template {
                    name: MailTemplate::Digest.name().to_owned(),
                    detail: format!("rendering stopped: {err}"),
                })
            })),
        }
    }
    out
}
