//! tests/admission.rs's flood at the issue's own size: 19,000 connections
//! that never log in, from 250 addresses, cannot keep a password login or a
//! token Resume out.

mod common;

use common::*;
use std::time::Duration;

/// The issue's own size: 250 addresses (127.0.1.1–250) each holding its 76
/// newest connections that never log in and opening one more every 100 ms
/// (19,250 wanted, renewed all the time) against a node of 19,000. The flood
/// is held to half the node and pays for its renewals with its own
/// connections; a password login and a Resume from 127.0.0.1 are each in
/// within 2 s, ten rounds running. Alone in its file: the test process
/// holds some 19,300 sockets of its 20,000.
#[tokio::test]
async fn nineteen_thousand_waiting_connections_from_250_addresses_keep_no_login_out() {
    flood::logins_get_in_during(flood::Flood {
        node: 19_000,
        addresses: 250,
        held_per_address: 76,
        fill: Duration::from_millis(8000),
        // 2,500 new connections a second from 250 addresses, each keeping its
        // newest 76: the node stays full and evicts all along.
        every: Duration::from_millis(100),
        rounds: 10,
    })
    .await;
}
