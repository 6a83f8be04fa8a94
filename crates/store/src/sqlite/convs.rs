//! The writer's cache of what every send to a conversation needs: its kind,
//! its flags and its members with their roles. Only the writer thread uses
//! it. A change to a conversation drops its entry at the end of the change;
//! a failed commit drops every entry, so the cache never holds state that
//! did not commit.

use crate::{ConversationId, ConversationKind, Result, Role, StoreError, UserId};
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Arc;

/// Entries kept before the cache starts over; each is small next to the
/// work of a send, and a reload is one indexed range scan.
const MAX_ENTRIES: usize = 20_000;

pub struct ConvInfo {
    pub kind: ConversationKind,
    pub dismissed: bool,
    pub muted_all: bool,
    /// Current members, ascending.
    pub members: Arc<[UserId]>,
    /// Role and muted-until of each current member.
    pub roles: HashMap<UserId, (Role, i64)>,
}

#[derive(Default)]
pub struct ConvCache {
    map: HashMap<ConversationId, Arc<ConvInfo>>,
}

impl ConvCache {
    pub fn get(&mut self, conn: &Connection, id: ConversationId) -> Result<Arc<ConvInfo>> {
        if let Some(info) = self.map.get(&id) {
            return Ok(info.clone());
        }
        let info = Arc::new(load(conn, id)?);
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
        }
        self.map.insert(id, info.clone());
        Ok(info)
    }

    pub fn forget(&mut self, id: ConversationId) {
        self.map.remove(&id);
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

pub fn load(conn: &Connection, id: ConversationId) -> Result<ConvInfo> {
    let head: Option<(i64, bool, bool)> = conn
        .prepare_cached(
            "SELECT c.kind, COALESCE(g.dismissed, 0), COALESCE(g.muted_all, 0)
             FROM conversations c LEFT JOIN groups g ON g.conversation_id = c.id WHERE c.id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((kind, dismissed, muted_all)) = head else {
        return Err(StoreError::NotFound("conversation"));
    };
    let mut members = Vec::new();
    let mut roles = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, role, muted_until_ms FROM members
         WHERE conversation_id = ?1 AND left_seq = 0 ORDER BY user_id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, UserId>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (user, role, muted) = row?;
        members.push(user);
        roles.insert(user, (Role::from_i64(role), muted));
    }
    Ok(ConvInfo {
        kind: ConversationKind::from_i64(kind).unwrap_or(ConversationKind::Direct),
        dismissed,
        muted_all,
        members: members.into(),
        roles,
    })
}
