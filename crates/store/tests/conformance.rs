//! The store conformance suite: every backend runs every test here, so the
//! backends keep exactly the same contract. Each test gets a fresh
//! database (a temporary SQLite file, a fresh PostgreSQL schema on
//! NATTER_TEST_POSTGRES_URL, a fresh MySQL database on NATTER_TEST_MYSQL_URL;
//! unset, that backend's part skips and says so).
//! Tests of several processes on one database run where the backend allows
//! them (PostgreSQL).
#![allow(clippy::unwrap_used)]

mod cases;
mod harness;

use cases::*;

macro_rules! conformance {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::harness::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = super::harness::postgres().await {
                        super::$name(env).await
                    }
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = super::harness::mysql().await {
                        super::$name(env).await
                    }
                }
            )*
        }
        /// Messages partitioned by conversation hash.
        mod postgres_hash {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let p = natter_store::postgres::Partitioning::Hash { partitions: 4 };
                    if let Some(env) = super::harness::postgres_with(p).await {
                        super::$name(env).await
                    }
                }
            )*
        }
        /// Messages partitioned by month.
        mod postgres_monthly {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let p = natter_store::postgres::Partitioning::Monthly { retention_days: 0 };
                    if let Some(env) = super::harness::postgres_with(p).await {
                        super::$name(env).await
                    }
                }
            )*
        }
    };
}

conformance!(
    accounts_and_lookups,
    email_addresses_and_codes,
    the_device_policy,
    seqs_are_dense_and_resends_idempotent,
    a_key_belongs_to_its_conversation,
    a_refused_append_does_not_spoil_its_round,
    queueing_order_is_storing_order,
    seqs_stay_dense_across_sends_changes_and_refusals,
    pages_are_cut_by_bytes_but_never_empty,
    list_pages_keep_to_their_budget_and_cover_everything,
    sync_respects_cursors_joins_and_leaves,
    the_conversation_list,
    cursors_move_only_forward,
    friends_requests_and_blocks,
    groups_rooms_and_join_requests,
    the_operators_find_thin_and_dismiss_groups,
    recall_within_the_window,
    one_to_one_policy,
    writes_stop_when_told,
    two_nodes_append_to_one_conversation,
    two_nodes_race_on_one_client_msg_id,
    a_newer_schema_is_refused,
);
