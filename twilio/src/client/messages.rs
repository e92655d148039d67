//! Messages resource: `/2010-04-01/Accounts/{AccountSid}/Messages`.

use serde::{Deserialize, Serialize};

use super::{Form, Result, TwilioClient, lenient_code, push_opt};
use crate::mask::mask_phone;

/// Parameters of `POST …/Messages.json`.
///
/// Twilio requires only `To` in its spec, but in practice also `From` or `MessagingServiceSid`, and `Body`,
/// `MediaUrl` or `ContentSid`; it reports missing ones as 21603 / 21619, so they are not checked here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateMessage {
    /// `To`: E.164 number or channel address (`whatsapp:+15552229999`).
    pub to: String,
    /// `From`: one of the account's numbers, an alphanumeric sender ID or `whatsapp:+…`.
    pub from: Option<String>,
    /// `MessagingServiceSid` (`MG…`): Twilio picks the sender from the service's pool.
    pub messaging_service_sid: Option<String>,
    /// `Body`, up to 1,600 characters.
    pub body: Option<String>,
    /// `MediaUrl`, up to 10 (sent as a repeated field).
    pub media_url: Vec<String>,
    /// `ContentSid` (`HX…`): a content template, required for WhatsApp outside the 24 h window.
    pub content_sid: Option<String>,
    /// `ContentVariables`: template variables as a JSON *string*, e.g. `{"1":"12/1"}`.
    pub content_variables: Option<String>,
    /// `StatusCallback`: URL receiving delivery status updates.
    pub status_callback: Option<String>,
}

impl CreateMessage {
    fn form(&self) -> Form {
        let mut form = vec![("To", self.to.clone())];
        push_opt(&mut form, "From", self.from.as_ref());
        push_opt(
            &mut form,
            "MessagingServiceSid",
            self.messaging_service_sid.as_ref(),
        );
        push_opt(&mut form, "Body", self.body.as_ref());
        form.extend(self.media_url.iter().map(|url| ("MediaUrl", url.clone())));
        push_opt(&mut form, "ContentSid", self.content_sid.as_ref());
        push_opt(
            &mut form,
            "ContentVariables",
            self.content_variables.as_ref(),
        );
        push_opt(&mut form, "StatusCallback", self.status_callback.as_ref());
        form
    }
}

/// Filters of `GET …/Messages.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMessages {
    /// `To`.
    pub to: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `DateSent`: `YYYY-MM-DD` or ISO 8601 date-time.
    pub date_sent: Option<String>,
    /// `DateSent<`: sent before this date.
    pub date_sent_before: Option<String>,
    /// `DateSent>`: sent after this date.
    pub date_sent_after: Option<String>,
    /// `PageSize`, 1–1000 (Twilio's default 50).
    pub page_size: Option<u32>,
}

impl ListMessages {
    fn query(&self) -> Form {
        let mut query = Form::new();
        push_opt(&mut query, "To", self.to.as_ref());
        push_opt(&mut query, "From", self.from.as_ref());
        push_opt(&mut query, "DateSent", self.date_sent.as_ref());
        push_opt(&mut query, "DateSent<", self.date_sent_before.as_ref());
        push_opt(&mut query, "DateSent>", self.date_sent_after.as_ref());
        push_opt(&mut query, "PageSize", self.page_size);
        query
    }
}

/// Message status as Twilio reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageStatus {
    /// `queued`: accepted, waiting to be sent (initial status without a Messaging Service).
    Queued,
    /// `sending`.
    Sending,
    /// `sent`: handed to the carrier.
    Sent,
    /// `failed`: not sent; see `error_code`.
    Failed,
    /// `delivered`: the carrier confirmed delivery.
    Delivered,
    /// `undelivered`: the carrier could not deliver; see `error_code`.
    Undelivered,
    /// `receiving`: inbound message being received.
    Receiving,
    /// `received`: inbound message.
    Received,
    /// `accepted`: initial status with a Messaging Service.
    Accepted,
    /// `scheduled`: has `SendAt`.
    Scheduled,
    /// `read`: WhatsApp read receipt.
    Read,
    /// `partially_delivered`.
    PartiallyDelivered,
    /// `canceled`: a scheduled message was canceled.
    Canceled,
    /// A status this crate does not know yet; treat as non-final.
    #[serde(other)]
    Unknown,
}

/// A Message resource as Twilio returns it. Numeric-looking fields are strings on the wire and stay strings;
/// dates are RFC 2822 (`Thu, 24 Aug 2023 05:01:45 +0000`). Unknown fields are ignored.
///
/// `Debug` shows phone numbers and the body: do not log it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `SM…` (or `MM…` for MMS).
    pub sid: String,
    /// Owning account.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Messaging Service that sent it.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// Sender (null while a Messaging Service has not picked one).
    #[serde(default)]
    pub from: Option<String>,
    /// Text.
    #[serde(default)]
    pub body: Option<String>,
    /// Current status.
    pub status: MessageStatus,
    /// `inbound`, `outbound-api`, `outbound-call` or `outbound-reply`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Number of segments, as a string.
    #[serde(default)]
    pub num_segments: Option<String>,
    /// Number of media items, as a string.
    #[serde(default)]
    pub num_media: Option<String>,
    /// Price as a decimal string (`"-0.03000"`), null until known.
    #[serde(default)]
    pub price: Option<String>,
    /// Currency of `price`.
    #[serde(default)]
    pub price_unit: Option<String>,
    /// Twilio error code for `failed` / `undelivered`.
    #[serde(default, deserialize_with = "lenient_code")]
    pub error_code: Option<u32>,
    /// Description of `error_code`.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Creation time (RFC 2822).
    #[serde(default)]
    pub date_created: Option<String>,
    /// Send time (RFC 2822).
    #[serde(default)]
    pub date_sent: Option<String>,
    /// Last update time (RFC 2822).
    #[serde(default)]
    pub date_updated: Option<String>,
    /// `2010-04-01`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Resource path.
    #[serde(default)]
    pub uri: Option<String>,
}

/// One page of `GET …/Messages.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    /// Messages on this page, newest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Path of the next page, `None` on the last one.
    #[serde(default)]
    pub next_page_uri: Option<String>,
    /// Zero-based page number.
    #[serde(default)]
    pub page: Option<u32>,
    /// Page size used.
    #[serde(default)]
    pub page_size: Option<u32>,
}

impl TwilioClient {
    /// Sends a message (`POST …/Messages.json`, 201).
    pub async fn create_message(&self, params: &CreateMessage) -> Result<Message> {
        tracing::debug!(to = %mask_phone(&params.to), "creating Twilio message");
        let request = self
            .http
            .post(self.account_url(&["Messages.json"]))
            .form(&params.form());
        let message: Message = self.execute(request).await?;
        tracing::debug!(sid = %message.sid, status = ?message.status, "Twilio message created");
        Ok(message)
    }

    /// Fetches one message (`GET …/Messages/{sid}.json`).
    pub async fn fetch_message(&self, sid: &str) -> Result<Message> {
        let path = format!("{sid}.json");
        let request = self.http.get(self.account_url(&["Messages", &path]));
        self.execute(request).await
    }

    /// Fetches the first page of messages matching `filter`.
    pub async fn list_messages(&self, filter: &ListMessages) -> Result<MessagePage> {
        let request = self
            .http
            .get(self.account_url(&["Messages.json"]))
            .query(&filter.query());
        self.execute(request).await
    }

    /// Fetches the page after `page`, or `None` if it was the last.
    pub async fn next_messages_page(&self, page: &MessagePage) -> Result<Option<MessagePage>> {
        let Some(uri) = page.next_page_uri.as_deref() else {
            return Ok(None);
        };
        let request = self.http.get(self.page_url(uri)?);
        self.execute(request).await.map(Some)
    }

    /// Lists messages matching `filter`, following `next_page_uri` until `limit` messages were collected or
    /// the pages run out.
    pub async fn list_messages_up_to(
        &self,
        filter: &ListMessages,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        if limit == 0 {
            return Ok(messages);
        }
        let mut page = self.list_messages(filter).await?;
        loop {
            let empty = page.messages.is_empty();
            let room = limit - messages.len();
            messages.extend(page.messages.drain(..).take(room));
            // An empty page with a next link would loop forever on a misbehaving server.
            if messages.len() >= limit || empty {
                return Ok(messages);
            }
            match self.next_messages_page(&page).await? {
                Some(next) => page = next,
                None => return Ok(messages),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_form_repeats_media_urls_and_skips_unset_fields() {
        let params = CreateMessage {
            to: "+15558675310".into(),
            from: Some("+15005550006".into()),
            body: Some("hi".into()),
            media_url: vec!["https://x/a.png".into(), "https://x/b.png".into()],
            ..CreateMessage::default()
        };

        let encoded = serde_urlencoded::to_string(params.form()).unwrap();

        assert_eq!(
            encoded,
            "To=%2B15558675310&From=%2B15005550006&Body=hi&MediaUrl=https%3A%2F%2Fx%2Fa.png&MediaUrl=https%3A%2F%2Fx%2Fb.png"
        );
    }

    #[test]
    fn list_filters_use_twilios_inequality_names() {
        let filter = ListMessages {
            to: Some("+123456789".into()),
            date_sent_after: Some("2008-01-02".into()),
            page_size: Some(2),
            ..ListMessages::default()
        };

        let encoded = serde_urlencoded::to_string(filter.query()).unwrap();

        assert_eq!(encoded, "To=%2B123456789&DateSent%3E=2008-01-02&PageSize=2");
    }

    #[test]
    fn message_json_from_the_spec_example_parses() {
        let json = r#"{
            "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "api_version": "2010-04-01",
            "body": "Hi there",
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": null,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": "+14155552345",
            "num_media": "0",
            "num_segments": "1",
            "price": null,
            "price_unit": "USD",
            "messaging_service_sid": null,
            "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "status": "queued",
            "subresource_uris": {"media": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Media.json"},
            "to": "+14155552345",
            "uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
            "some_future_field": {"x": 1}
        }"#;

        let message: Message = serde_json::from_str(json).unwrap();

        assert_eq!(message.sid, "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(message.status, MessageStatus::Queued);
        assert_eq!(message.num_segments.as_deref(), Some("1"));
        assert_eq!(message.error_code, None);
        assert_eq!(message.date_sent, None);
    }

    #[test]
    fn failed_message_with_error_code_and_unknown_status_parse() {
        let failed: Message =
            serde_json::from_str(r#"{"sid":"SM1","status":"undelivered","error_code":30003}"#)
                .unwrap();
        let future: Message =
            serde_json::from_str(r#"{"sid":"SM2","status":"teleported"}"#).unwrap();
        let partial: Message =
            serde_json::from_str(r#"{"sid":"SM3","status":"partially_delivered"}"#).unwrap();

        assert_eq!(failed.status, MessageStatus::Undelivered);
        assert_eq!(failed.error_code, Some(30003));
        assert_eq!(future.status, MessageStatus::Unknown);
        assert_eq!(partial.status, MessageStatus::PartiallyDelivered);
    }
}
