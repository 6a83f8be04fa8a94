//! Every Redis key and channel the cluster uses, in one place (docs/CLUSTER.md
//! lists them with what happens when they go away). All start with the
//! cluster's name, so several clusters can share one Redis.

use natter_service::model::UserId;

pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(cluster: &str) -> Keys {
        Keys {
            prefix: cluster.to_owned(),
        }
    }

    /// HASH node id → the node's last load report (JSON).
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// STRING: the node's incarnation while it reports; expires three
    /// reports after the last one, which makes the node dead.
    pub(crate) fn alive(&self, node: &str) -> String {
        format!("{}:node:{node}:alive", self.prefix)
    }

    /// SET of the users with a session on the node (what a survivor clears).
    pub(crate) fn node_users(&self, node: &str) -> String {
        format!("{}:node:{node}:users", self.prefix)
    }

    /// SET of the nodes where the user has a session; expires unless refreshed.
    pub(crate) fn presence(&self, user: UserId) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    /// The pub/sub channel a node listens on.
    pub(crate) fn bus(&self, node: &str) -> String {
        format!("{}:bus:{node}", self.prefix)
    }

    /// STRING: a user's shared send allowance (its GCRA arrival time),
    /// while they have sessions on several nodes.
    pub(crate) fn rate(&self, user: UserId) -> String {
        format!("{}:rate:{user}", self.prefix)
    }

    /// STRING, SET NX with a short expiry: the survivor clearing a dead node.
    pub(crate) fn reaper(&self, node: &str) -> String {
        format!("{}:reap:{node}", self.prefix)
    }
}
