//! [`AdminStore`] on PostgreSQL: the shared SQL of `sql/admin.rs` on the
//! pool, a write of more than one statement in a transaction.

use super::engine::dialect::Pg;
use super::engine::faults::collided;
use super::{PgStore, COMMITTED};
use crate::sql::admin;
use crate::{
    AccountDetail, AccountSummary, AdminId, AdminRecord, AdminRole, AdminSessionRecord, AdminStore,
    AuditRecord, Bar, ConversationId, GroupAction, GroupLimits, GroupRecord, MemberRecord,
    NewAudit, Result, SessionId, UserId,
};
use async_trait::async_trait;

#[async_trait]
impl AdminStore for PgStore {
    async fn put_admin(
        &self,
        name: &str,
        password_hash: &str,
        role: AdminRole,
        now_ms: i64,
        replace: bool,
    ) -> Result<bool> {
        transaction!(self, COMMITTED, |tx| admin::put_admin(
            &Pg(tx),
            name,
            password_hash,
            role,
            now_ms,
            replace
        )
        .await?)
    }

    async fn admin_by_name(&self, name: &str) -> Result<Option<AdminRecord>> {
        self.with(|c| async move { admin::admin_by_name(&Pg(&**c), name).await })
            .await
    }

    async fn admins(&self) -> Result<Vec<AdminRecord>> {
        self.with(|c| async move { admin::admins(&Pg(&**c)).await })
            .await
    }

    async fn create_admin_session(
        &self,
        admin_id: AdminId,
        token_hash: [u8; 32],
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        let token_hash = &token_hash;
        self.with(|c| async move {
            admin::create_admin_session(&Pg(&**c), admin_id, token_hash, now_ms, expires_at_ms)
                .await
        })
        .await
    }

    async fn admin_session(&self, token_hash: [u8; 32]) -> Result<Option<AdminSessionRecord>> {
        let token_hash = &token_hash;
        self.with(|c| async move { admin::admin_session(&Pg(&**c), token_hash).await })
            .await
    }

    async fn end_admin_session(&self, token_hash: [u8; 32]) -> Result<()> {
        let token_hash = &token_hash;
        self.with(|c| async move { admin::end_admin_session(&Pg(&**c), token_hash).await })
            .await
    }

    async fn audit(&self, entry: NewAudit) -> Result<()> {
        let entry = &entry;
        self.with(|c| async move { admin::audit(&Pg(&**c), entry).await })
            .await
    }

    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.with(|c| async move { admin::audit_log(&Pg(&**c), before, limit).await })
            .await
    }

    async fn accounts(
        &self,
        text: &str,
        after: UserId,
        limit: usize,
    ) -> Result<Vec<AccountSummary>> {
        self.with(|c| async move { admin::accounts(&Pg(&**c), text, after, limit).await })
            .await
    }

    async fn account(&self, id: UserId, now_ms: i64) -> Result<Option<AccountDetail>> {
        self.with(|c| async move { admin::account(&Pg(&**c), id, now_ms).await })
            .await
    }

    async fn set_bar(&self, id: UserId, bar: Bar) -> Result<Vec<SessionId>> {
        let bar = &bar;
        transaction!(self, COMMITTED, |tx| admin::set_bar(&Pg(tx), id, bar)
            .await?)
    }

    async fn end_sessions(&self, id: UserId) -> Result<Vec<SessionId>> {
        self.with(|c| async move { admin::end_sessions(&Pg(&**c), id).await })
            .await
    }

    async fn delete_account(&self, id: UserId) -> Result<Vec<SessionId>> {
        transaction!(self, COMMITTED, |tx| admin::delete_account(&Pg(tx), id)
            .await?)
    }

    async fn lift_ended_bans(&self, now_ms: i64) -> Result<Vec<UserId>> {
        self.with(|c| async move { admin::lift_ended_bans(&Pg(&**c), now_ms).await })
            .await
    }

    async fn admin_groups(
        &self,
        text: &str,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<GroupRecord>> {
        self.with(|c| async move { admin::groups(&Pg(&**c), text, after, limit).await })
            .await
    }

    async fn admin_group(
        &self,
        id: ConversationId,
        after: UserId,
        limit: usize,
    ) -> Result<Option<(GroupRecord, Vec<MemberRecord>)>> {
        self.with(|c| async move { admin::group(&Pg(&**c), id, after, limit).await })
            .await
    }

    async fn operate_group(
        &self,
        id: ConversationId,
        action: GroupAction,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<()> {
        self.change(super::engine::writer::Act {
            actor: crate::rules::GroupActor::Operator,
            id,
            action,
            limits,
            now_ms,
        })
        .await
    }
}
