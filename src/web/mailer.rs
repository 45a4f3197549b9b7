//! The mail the web forms send at once: the confirmation of a subscription and the
//! acknowledgement of an enablement request. These are answers to a visitor's own action, so
//! they go straight to the transport rather than through the weekly delivery ledger; a failure
//! is shown to the visitor, who can send the form again.

use crate::clock::Clock;
use crate::domain::EmailAddress;
use crate::mail::MailError;
use crate::mail::message::{MailContext, confirmation_message, request_ack_message};
use crate::mail::templates::Renderer;
use crate::mail::transport::{SendError, Transport};
use crate::settings::Settings;
use crate::store::councils::Council;
use crate::tokens::SigningKey;

/// Why a form's e-mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum FormMailError {
    #[error("cannot build the e-mail: {0}")]
    Build(#[from] MailError),
    #[error("cannot send the e-mail: {0}")]
    Send(#[from] SendError),
}

/// Renders and sends the forms' e-mails. Built once, inside the runtime.
pub struct Mailer {
    context: MailContext,
    renderer: Renderer,
    transport: Transport,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn from_settings(
        settings: &Settings,
        signing_key: SigningKey,
        clock: Clock,
    ) -> Result<Mailer, String> {
        let context = MailContext::new(settings, signing_key, clock).map_err(|e| e.to_string())?;
        let renderer = Renderer::new(settings).map_err(|e| e.to_string())?;
        let transport = Transport::from_settings(settings).map_err(|e| e.to_string())?;
        Ok(Mailer {
            context,
            renderer,
            transport,
        })
    }

    pub fn context(&self) -> &MailContext {
        &self.context
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Mails the link that confirms a pending subscription to `council`.
    pub async fn send_confirmation(
        &self,
        to: &EmailAddress,
        council: &Council,
        confirm_url: &str,
    ) -> Result<(), FormMailError> {
        let message =
            confirmation_message(&self.context, &self.renderer, to, council, confirm_url)?;
        self.transport.send(&message).await?;
        Ok(())
    }

    /// Mails the acknowledgement of an enablement request for `council`.
    pub async fn send_request_ack(
        &self,
        to: &EmailAddress,
        name: &str,
        council: &Council,
    ) -> Result<(), FormMailError> {
        let message = request_ack_message(&self.context, &self.renderer, to, council, Some(name))?;
        self.transport.send(&message).await?;
        Ok(())
    }
}
