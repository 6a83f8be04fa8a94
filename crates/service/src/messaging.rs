//! Sending, syncing, history and delivery receipts.

use crate::events::Limiter;
use crate::{now_ms, Event, Service, ServiceError, SessionInfo};
use natter_domain::{
    Appended, Before, Body, BodyKind, ConversationId, ConversationSummary, HistoryPage, NewMessage,
    Page, SyncPage, Target, UserId,
};
use natter_runtime::clock::Instant;
use natter_store::PendingAppend;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

/// Counted per send, stored and duplicate: handles, not a registry lookup
/// (and a label vector) per send (see `src/server/metrics.rs`).
static MESSAGES: LazyLock<[metrics::Counter; 2]> = LazyLock::new(|| {
    ["stored", "duplicate"].map(|o| metrics::counter!("natter_messages_total", "outcome" => o))
});
use std::task::{Context, Poll};

/// The sync page served while the node is in its essential-only stage.
const SMALL_PAGE: Page = Page {
    items: 50,
    bytes: 32 * 1024,
};

#[derive(Clone, Debug)]
pub struct SendInput {
    pub client_msg_id: String,
    pub target: Target,
    pub body: Body,
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
}

/// What a file reference must carry; the bytes live in the file service.
#[derive(serde::Deserialize)]
struct FileRef {
    file_id: String,
    name: String,
    /// Must be present and a number; what it says is the client's business.
    #[allow(dead_code)]
    size: u64,
}

/// A queued Send's outcome, once its commit is over.
pub struct PendingSend {
    pending: PendingAppend,
    /// Who is given back the message its send took, if the store refuses
    /// it (UNAVAILABLE): the client sends it again.
    refund: Refund,
}

struct Refund {
    limiter: Arc<dyn Limiter>,
    user: natter_domain::UserId,
}

impl Refund {
    /// Gives the allowance back when `e` says the store refused the Send.
    fn after(&self, e: &ServiceError) {
        if matches!(e, ServiceError::Unavailable(_)) {
            self.limiter.give_back_send(self.user);
        }
    }
}

impl Future for PendingSend {
    type Output = Result<Appended, ServiceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.pending).poll(cx).map(|r| {
            let appended = r
                .map_err(ServiceError::from)
                .inspect_err(|e| self.refund.after(e))?;
            MESSAGES[usize::from(appended.duplicate)].increment(1);
            Ok(appended)
        })
    }
}

impl Service {
    fn check_body(&self, body: &Body) -> Result<(), ServiceError> {
        crate::error::storable("a message body", &body.content)?;
        let max = self.inner.config.max_message_bytes;
        if body.content.len() > max {
            return Err(ServiceError::MessageTooLarge {
                size: body.content.len(),
                max,
            });
        }
        match body.kind {
            BodyKind::Text if body.content.trim().is_empty() => Err(ServiceError::InvalidArgument(
                "text message is empty".into(),
            )),
            BodyKind::Custom
                if serde_json::from_str::<serde::de::IgnoredAny>(&body.content).is_err() =>
            {
                Err(ServiceError::InvalidArgument(
                    "custom message content is not valid JSON".into(),
                ))
            }
            BodyKind::File => match serde_json::from_str::<FileRef>(&body.content) {
                Ok(f) if !f.file_id.is_empty() && !f.name.is_empty() => Ok(()),
                _ => Err(ServiceError::InvalidArgument(
                    "a file message is JSON with a non-empty file_id and name and a size".into(),
                )),
            },
            BodyKind::System | BodyKind::Recalled => Err(ServiceError::InvalidArgument(
                "system and recalled bodies are written by the server only".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Stores a message and returns its ACK data. Returns only after the
    /// store has committed; a repeated client_msg_id returns the original.
    pub async fn send(
        &self,
        session: &SessionInfo,
        input: SendInput,
    ) -> Result<Appended, ServiceError> {
        self.queue_send(session, Ok(input)).await?.await
    }

    /// Checks a message and queues it for the store; returns once it is
    /// queued, with the commit still to come. Sends one session queues one
    /// after another are stored in that order, so a connection may wait
    /// for several commits at once without reordering its messages.
    ///
    /// Every attempt takes one from the sender's allowance first, so an
    /// edge passes what it parsed, or why it could not: a malformed Send
    /// costs as much as a good one, and over the limit the answer is
    /// RATE_LIMITED whatever the request held.
    pub async fn queue_send(
        &self,
        session: &SessionInfo,
        input: Result<SendInput, ServiceError>,
    ) -> Result<PendingSend, ServiceError> {
        if let Err(retry_after) = self.inner.limiter.take_send(session.user_id).await {
            metrics::counter!("natter_limit_hits_total", "limit" => "send_rate").increment(1);
            return Err(ServiceError::RateLimited {
                what: "message rate limit reached",
                retry_after,
            });
        }
        let input = input?;
        crate::error::storable("client_msg_id", &input.client_msg_id)?;
        if input.client_msg_id.is_empty() || input.client_msg_id.len() > 64 {
            return Err(ServiceError::InvalidArgument(
                "client_msg_id must be 1-64 bytes".into(),
            ));
        }
        if input
            .client_msg_id
            .starts_with(natter_domain::SYSTEM_ID_PREFIX)
        {
            return Err(ServiceError::InvalidArgument(format!(
                "client_msg_id must not start with `{}` (the server's own events use it)",
                natter_domain::SYSTEM_ID_PREFIX
            )));
        }
        self.check_body(&input.body)?;
        let file = match input.body.kind {
            BodyKind::File => serde_json::from_str::<FileRef>(&input.body.content)
                .ok()
                .map(|f| f.file_id),
            _ => None,
        };
        if input.mentions.len() > 100 {
            return Err(ServiceError::InvalidArgument(
                "at most 100 mentions per message".into(),
            ));
        }
        let refund = Refund {
            limiter: self.inner.limiter.clone(),
            user: session.user_id,
        };
        // A file is shared before its message is stored: whoever the
        // message reaches can download it at once.
        if let (Some(file_id), Some(files)) = (&file, self.inner.files.get()) {
            files.share(session.user_id, file_id, input.target).await;
        }
        let queued = self
            .inner
            .store
            .queue_append(NewMessage {
                sender_id: session.user_id,
                target: input.target,
                client_msg_id: input.client_msg_id,
                body: input.body,
                mentions: input.mentions,
                mention_all: input.mention_all,
                friends_only: self.inner.config.friends_only_dm,
                now_ms: now_ms(),
                origin: Some(session.session_id),
            })
            .await
            .map_err(ServiceError::from);
        let pending = queued.inspect_err(|e| refund.after(e))?;
        Ok(PendingSend { pending, refund })
    }

    /// A finished file to download (`Files::read` reads it): the
    /// uploader's own, or one a file message shared with the user (a 1:1)
    /// or with a conversation the user is in. Anyone else hears it does not
    /// exist.
    pub async fn open_file(
        &self,
        session: &SessionInfo,
        id: &str,
    ) -> Result<crate::files::Upload, ServiceError> {
        let files = self.files()?;
        let u = files.lookup(id)?.ok_or(ServiceError::NotFound("file"))?;
        let mut allowed =
            u.owner == session.user_id || u.shared_with_users.contains(&session.user_id);
        for &c in u.shared_with.iter().take(crate::files::MAX_SHARES) {
            if allowed {
                break;
            }
            allowed = self.inner.store.audience(session.user_id, c).await.is_ok();
        }
        if !allowed {
            return Err(ServiceError::NotFound("file"));
        }
        if !u.finished() {
            return Err(ServiceError::NotFound("file"));
        }
        Ok(u)
    }

    /// A page of what the user has not seen, in conversations after `after`.
    pub async fn sync(
        &self,
        session: &SessionInfo,
        cursors: HashMap<ConversationId, u64>,
        after: ConversationId,
        limit: usize,
    ) -> Result<SyncPage, ServiceError> {
        let mut page = Page {
            items: limit.clamp(1, self.inner.config.max_sync_page),
            bytes: self.inner.config.max_page_bytes,
        };
        if !self.inner.load.serves_extras() {
            // Under overload a sync still makes progress, in small steps.
            page.items = page.items.min(SMALL_PAGE.items);
            page.bytes = page.bytes.min(SMALL_PAGE.bytes);
        }
        Ok(self
            .inner
            .store
            .sync(session.user_id, &cursors, after, page)
            .await?)
    }

    pub async fn history(
        &self,
        session: &SessionInfo,
        conversation: ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, ServiceError> {
        let page = Page {
            items: limit.clamp(1, self.inner.config.max_history_page),
            bytes: self.inner.config.max_page_bytes,
        };
        Ok(self
            .inner
            .store
            .history(session.user_id, conversation, before_seq, page)
            .await?)
    }

    /// Records that this user has every message up to `seq`, and tells the
    /// other members when the cursor moved.
    pub async fn delivery_ack(
        &self,
        session: &SessionInfo,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<(), ServiceError> {
        let moved = self
            .inner
            .store
            .mark_delivered(session.user_id, conversation, seq)
            .await?;
        if let Some(d) = moved {
            let to = d
                .members
                .into_iter()
                .filter(|u| *u != session.user_id)
                .collect();
            self.inner.events.publish(Event::Receipt {
                conversation_id: conversation,
                user_id: session.user_id,
                seq: d.seq,
                to,
            });
        }
        Ok(())
    }

    /// Moves the read cursor; the user's other sessions and a 1:1 peer hear.
    pub async fn mark_read(
        &self,
        session: &SessionInfo,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<(), ServiceError> {
        let moved = self
            .inner
            .store
            .mark_read(session.user_id, conversation, seq)
            .await?;
        if let Some(r) = moved {
            self.inner.events.publish(Event::Read {
                conversation_id: conversation,
                user_id: session.user_id,
                seq: r.seq,
                to: r.notify,
            });
        }
        Ok(())
    }

    /// Tells the other members that this user is typing. Nothing is stored.
    /// At most one signal per user and conversation per
    /// `throttle.typing_interval` is passed on, none in conversations larger
    /// than `social.typing_max_members`, and none while the node is in its
    /// essential-only stage; the others are answered but dropped.
    pub async fn typing(
        &self,
        session: &SessionInfo,
        conversation: ConversationId,
    ) -> Result<(), ServiceError> {
        let passed = self.inner.load.serves_extras()
            && self
                .inner
                .throttles
                .typing(session.user_id, conversation, Instant::now());
        if !passed {
            metrics::counter!("natter_typing_dropped_total").increment(1);
            return Ok(());
        }
        let members = self
            .inner
            .store
            .audience(session.user_id, conversation)
            .await?;
        if members.len() > self.inner.config.typing_max_members {
            metrics::counter!("natter_typing_dropped_total").increment(1);
            return Ok(());
        }
        let to = members
            .into_iter()
            .filter(|u| *u != session.user_id)
            .collect();
        self.inner.events.publish(Event::Typing {
            conversation_id: conversation,
            user_id: session.user_id,
            to,
        });
        Ok(())
    }

    pub async fn recall(
        &self,
        session: &SessionInfo,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<(), ServiceError> {
        let window_ms = (self.inner.config.recall_window_secs * 1000) as i64;
        Ok(self
            .inner
            .store
            .recall(session.user_id, conversation, seq, window_ms, now_ms())
            .await?)
    }

    /// A page of the conversation list, most recent first, after `before`.
    pub async fn conversations(
        &self,
        session: &SessionInfo,
        before: Option<Before>,
        limit: usize,
    ) -> Result<(Vec<ConversationSummary>, bool), ServiceError> {
        let page = self.list_page(limit, 100, 500);
        Ok(self
            .inner
            .store
            .conversations(session.user_id, before, page)
            .await?)
    }
}
