//! [`AdminStore`] on SQLite: the shared SQL of `sql/admin.rs`, writes on
//! the writer thread, reads on a reader connection.

use super::engine::dialect::{now, Lite};
use super::jobs::Scope;
use super::SqliteStore;
use crate::sql::admin;
use crate::{
    AccountDetail, AccountSummary, AdminId, AdminRecord, AdminRole, AdminSessionRecord, AdminStore,
    AuditRecord, Bar, ConversationId, GroupAction, GroupLimits, GroupRecord, MemberRecord,
    NewAudit, Result, SessionId, UserId,
};
use async_trait::async_trait;

#[async_trait]
impl AdminStore for SqliteStore {
    async fn put_admin(
        &self,
        name: &str,
        password_hash: &str,
        role: AdminRole,
        now_ms: i64,
        replace: bool,
    ) -> Result<bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write_apart(move |t| {
            now(admin::put_admin(
                &Lite(t.conn),
                &name,
                &hash,
                role,
                now_ms,
                replace,
            ))
        })
        .await
    }

    async fn admin_by_name(&self, name: &str) -> Result<Option<AdminRecord>> {
        let name = name.to_owned();
        self.read(move |c| now(admin::admin_by_name(&Lite(c), &name)))
            .await
    }

    async fn admins(&self) -> Result<Vec<AdminRecord>> {
        self.read(move |c| now(admin::admins(&Lite(c)))).await
    }

    async fn create_admin_session(
        &self,
        admin_id: AdminId,
        token_hash: [u8; 32],
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        self.write_apart(move |t| {
            now(admin::create_admin_session(
                &Lite(t.conn),
                admin_id,
                &token_hash,
                now_ms,
                expires_at_ms,
            ))
        })
        .await
    }

    async fn admin_session(&self, token_hash: [u8; 32]) -> Result<Option<AdminSessionRecord>> {
        self.read(move |c| now(admin::admin_session(&Lite(c), &token_hash)))
            .await
    }

    async fn end_admin_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write_apart(move |t| now(admin::end_admin_session(&Lite(t.conn), &token_hash)))
            .await
    }

    async fn audit(&self, entry: NewAudit) -> Result<()> {
        self.write_apart(move |t| now(admin::audit(&Lite(t.conn), &entry)))
            .await
    }

    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.read(move |c| now(admin::audit_log(&Lite(c), before, limit)))
            .await
    }

    async fn accounts(
        &self,
        text: &str,
        after: UserId,
        limit: usize,
    ) -> Result<Vec<AccountSummary>> {
        let text = text.to_owned();
        self.read(move |c| now(admin::accounts(&Lite(c), &text, after, limit)))
            .await
    }

    async fn account(&self, id: UserId, now_ms: i64) -> Result<Option<AccountDetail>> {
        self.read(move |c| now(admin::account(&Lite(c), id, now_ms)))
            .await
    }

    // Accounts and sessions only: apart from the messages, so none of these
    // waits for the records in the log to be copied first.
    async fn set_bar(&self, id: UserId, bar: Bar) -> Result<Vec<SessionId>> {
        self.write_apart(move |t| {
            // Whether the account may be written to is in the writer's cache.
            t.convs.social_changed();
            now(admin::set_bar(&Lite(t.conn), id, &bar))
        })
        .await
    }

    async fn end_sessions(&self, id: UserId) -> Result<Vec<SessionId>> {
        self.write_apart(move |t| now(admin::end_sessions(&Lite(t.conn), id)))
            .await
    }

    async fn delete_account(&self, id: UserId) -> Result<Vec<SessionId>> {
        self.write(move |t| {
            t.convs.social_changed();
            now(admin::delete_account(&Lite(t.conn), id))
        })
        .await
    }

    /// Runs once a minute: it used to copy every waiting record first, a
    /// stall of seconds for every send under load.
    async fn lift_ended_bans(&self, now_ms: i64) -> Result<Vec<UserId>> {
        self.write_apart(move |t| {
            let lifted = now(admin::lift_ended_bans(&Lite(t.conn), now_ms))?;
            if !lifted.is_empty() {
                t.convs.social_changed();
            }
            Ok(lifted)
        })
        .await
    }

    async fn admin_groups(
        &self,
        text: &str,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<GroupRecord>> {
        let text = text.to_owned();
        self.read(move |c| now(admin::groups(&Lite(c), &text, after, limit)))
            .await
    }

    async fn admin_group(
        &self,
        id: ConversationId,
        after: UserId,
        limit: usize,
    ) -> Result<Option<(GroupRecord, Vec<MemberRecord>)>> {
        self.fresh(Scope::Conversation(id), move |c| {
            now(admin::group(&Lite(c), id, after, limit))
        })
        .await
    }

    async fn operate_group(
        &self,
        id: ConversationId,
        action: GroupAction,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<()> {
        let operator = crate::rules::GroupActor::Operator;
        self.write_in(id, move |t| {
            super::groups::act(t, operator, id, &action, limits, now_ms)
        })
        .await
    }
}
