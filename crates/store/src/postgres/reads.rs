//! Reads: lookups, sync, history, the conversation list, friends and
//! groups. Each page is a bounded number of statements, whatever its size.
