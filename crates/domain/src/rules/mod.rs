//! The domain rules, written once for every backend: pure functions over
//! state a backend has loaded inside its transaction. Who may send, change a
//! group, recall or befriend; which sessions a login revokes; where a new
//! member's view starts; what system event a change records and who hears
//! of it. A backend loads, asks the rule, and writes what it says.

mod codes;
mod events;
mod friends;
mod groups;
mod refusal;
mod send;
mod sessions;
mod summaries;
mod sync;

pub use codes::{judge_code, CodeWrite};
pub use events::SystemEvent;
pub use friends::{
    may_block, respond_request, send_request, FriendPlan, RequestFacts, RequestWrite,
};
pub use groups::{
    act, create_group, join, join_point, Actor as GroupActor, Candidate, Change, CreatePlan,
    GroupHead, GroupUpdate, JoinStep,
};
pub use refusal::{Refusal, RefusalKind};
pub use send::{
    cursor_audience, cursor_needs_members, judge_send, may_send, recall, visible_upto,
    ConversationView, PeerFacts, RecallPlan, RecallStep, Recallable, SendTo, SendVerdict,
    READ_RECEIPTS_MAX_MEMBERS,
};
pub use sessions::sessions_to_revoke;
pub use summaries::{summarize, ListRow};
pub use sync::{assemble_sync, direct_ids, due_ranges, SyncRow, SYNC_CONVERSATIONS};
