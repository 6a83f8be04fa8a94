//! How the store's methods reach the database: writes as jobs for the
//! writer thread (in its database transaction, apart from the message log,
//! or staged for the log), reads on the pool of reader connections, and
//! reads that must first see what the log holds of their conversations.

use super::engine::tx::Tx;
use super::engine::writer::{Job, Sees, WriteJob};
use super::SqliteStore;
use crate::{ConversationId, Result, StoreError, UserId};
use rusqlite::Connection;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

impl SqliteStore {
    /// Runs `f` in the writer's current transaction, inside its own
    /// savepoint, after every record waiting in the log is copied into the
    /// database (a write that may touch any of a user's conversations).
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(WriteJob::new, f).await
    }

    /// Like [`SqliteStore::write`], for a write that reads or changes the
    /// messages, seqs or cursors of conversation `id` and of no other (a
    /// group's change, a recall): its round copies only that
    /// conversation's waiting records first.
    pub(super) async fn write_in<T, F>(&self, id: ConversationId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(
            |f, reply| WriteJob::seeing(f, reply, Sees::Conversation(id)),
            f,
        )
        .await
    }

    /// Like [`SqliteStore::write`], for a write that neither reads nor
    /// changes messages, seqs, cursors or conversations that exist
    /// (accounts, sessions, codes, the audit, a group's creation): its
    /// round need not copy the waiting log records into the database first,
    /// which would hold up every send behind it for as long as the copy
    /// takes (a login under load, say).
    pub(super) async fn write_apart<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(|f, reply| WriteJob::seeing(f, reply, Sees::Nothing), f)
            .await
    }

    /// Runs `f` in the writer's round as a staged (logged) write.
    pub(super) async fn staged<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(WriteJob::staged, f).await
    }

    /// Queues `f` for the writer as the job `make` builds and waits for its
    /// answer.
    async fn answer<T, F>(
        &self,
        make: impl FnOnce(F, oneshot::Sender<Result<T>>) -> WriteJob<F, T>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.submit(Box::new(make(f, reply))).await?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }

    pub(super) async fn submit(&self, job: Job) -> Result<()> {
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)
    }

    /// Like [`SqliteStore::read`], for a read of messages, seqs or cursors:
    /// first the records the log holds for the conversations in `scope` are
    /// copied into the database (on this reader's thread, not the
    /// writer's), so the read sees every write answered before it.
    pub(super) async fn fresh<T, F>(&self, scope: Scope, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (shared, waiting) = (self.shared.clone(), self.pending.clone());
        self.read(move |c| {
            if waiting.load(Ordering::Acquire) > 0 {
                match scope {
                    Scope::Conversation(id) => shared.copy_for_read(Some(&[id]))?,
                    Scope::User(user) => {
                        let mut ids = c
                            .prepare_cached(
                                "SELECT conversation_id FROM members WHERE user_id = ?1",
                            )?
                            .query_map([user], |r| r.get(0))?
                            .collect::<rusqlite::Result<Vec<ConversationId>>>()?;
                        // And the 1:1s made in the log that the database
                        // lacks yet.
                        ids.extend_from_slice(shared.pending().made_of(user));
                        shared.copy_for_read(Some(&ids))?
                    }
                    Scope::All => shared.copy_for_read(None)?,
                }
            }
            f(c)
        })
        .await
    }

    /// Runs `f` on a reader connection off the async runtime.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable)?;
        tokio::task::spawn_blocking(move || {
            let conn = pool
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .ok_or_else(|| StoreError::bug("reader pool: a permit without a connection"))?;
            let out = f(&conn);
            pool.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            drop(permit);
            out
        })
        .await
        .map_err(|e| StoreError::backend("a reader task failed", e))?
    }
}

/// Which conversations a [`SqliteStore::fresh`] read must see up to date.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scope {
    /// One conversation (its messages, seq and every member's cursors, and
    /// the conversation itself if it was made in the log).
    Conversation(ConversationId),
    /// Every conversation the user is or was a member of.
    User(UserId),
    /// Every conversation.
    All,
}
