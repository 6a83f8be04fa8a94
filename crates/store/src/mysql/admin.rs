//! [`AdminStore`] on MariaDB/MySQL: the shared SQL of `sql/admin.rs` on the
//! pool, a write of more than one statement in a transaction.

use super::engine::dialect::My;
use super::engine::faults::collided;
use super::store::{read, transaction, MyStore};
use super::writer;
use crate::sql::admin;
use crate::{
    AccountDetail, AccountSummary, AdminId, AdminRecord, AdminRole, AdminSessionRecord, AdminStore,
    AuditRecord, Bar, ConversationId, GroupAction, GroupLimits, GroupRecord, MemberRecord,
    NewAudit, Result, SessionId, UserId,
};
use async_trait::async_trait;
use mysql_async::TxOpts;

#[async_trait]
impl AdminStore for MyStore {
    async fn put_admin(
        &self,
        name: &str,
        password_hash: &str,
        role: AdminRole,
        now_ms: i64,
        replace: bool,
    ) -> Result<bool> {
        transaction!(self, |db| admin::put_admin(
            db,
            name,
            password_hash,
            role,
            now_ms,
            replace
        )
        .await?)
    }

    async fn admin_by_name(&self, name: &str) -> Result<Option<AdminRecord>> {
        read!(self, |db| admin::admin_by_name(db, name).await)
    }

    async fn admins(&self) -> Result<Vec<AdminRecord>> {
        read!(self, |db| admin::admins(db).await)
    }

    async fn create_admin_session(
        &self,
        admin_id: AdminId,
        token_hash: [u8; 32],
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        let token_hash = &token_hash;
        read!(self, |db| admin::create_admin_session(
            db,
            admin_id,
            token_hash,
            now_ms,
            expires_at_ms
        )
        .await)
    }

    async fn admin_session(&self, token_hash: [u8; 32]) -> Result<Option<AdminSessionRecord>> {
        let token_hash = &token_hash;
        read!(self, |db| admin::admin_session(db, token_hash).await)
    }

    async fn end_admin_session(&self, token_hash: [u8; 32]) -> Result<()> {
        let token_hash = &token_hash;
        read!(self, |db| admin::end_admin_session(db, token_hash).await)
    }

    async fn audit(&self, entry: NewAudit) -> Result<()> {
        let entry = &entry;
        read!(self, |db| admin::audit(db, entry).await)
    }

    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        read!(self, |db| admin::audit_log(db, before, limit).await)
    }

    async fn accounts(
        &self,
        text: &str,
        after: UserId,
        limit: usize,
    ) -> Result<Vec<AccountSummary>> {
        read!(self, |db| admin::accounts(db, text, after, limit).await)
    }

    async fn account(&self, id: UserId, now_ms: i64) -> Result<Option<AccountDetail>> {
        read!(self, |db| admin::account(db, id, now_ms).await)
    }

    async fn set_bar(&self, id: UserId, bar: Bar) -> Result<Vec<SessionId>> {
        let bar = &bar;
        transaction!(self, |db| admin::set_bar(db, id, bar).await?)
    }

    async fn end_sessions(&self, id: UserId) -> Result<Vec<SessionId>> {
        transaction!(self, |db| admin::end_sessions(db, id).await?)
    }

    async fn delete_account(&self, id: UserId) -> Result<Vec<SessionId>> {
        transaction!(self, |db| admin::delete_account(db, id).await?)
    }

    async fn lift_ended_bans(&self, now_ms: i64) -> Result<Vec<UserId>> {
        transaction!(self, |db| admin::lift_ended_bans(db, now_ms).await?)
    }

    async fn admin_groups(
        &self,
        text: &str,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<GroupRecord>> {
        read!(self, |db| admin::groups(db, text, after, limit).await)
    }

    async fn admin_group(
        &self,
        id: ConversationId,
        after: UserId,
        limit: usize,
    ) -> Result<Option<(GroupRecord, Vec<MemberRecord>)>> {
        read!(self, |db| admin::group(db, id, after, limit).await)
    }

    async fn operate_group(
        &self,
        id: ConversationId,
        action: GroupAction,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<()> {
        self.change(writer::Act {
            actor: crate::rules::GroupActor::Operator,
            id,
            action,
            limits,
            now_ms,
        })
        .await
    }
}
