//! The copy's parts that need no database (endpoints, mentions as text),
//! and a copy into a real MariaDB/MySQL (NATTER_TEST_MYSQL_URL; unset, the
//! test says so and skips): values of every kind arrive as they were, and
//! new rows go on from the copied ids.
#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn an_endpoint_is_a_url_or_a_data_directory() {
    let pg = "postgres://u@h/db";
    assert_eq!(Endpoint::parse(pg), Endpoint::Postgres(pg.into()));
    let pg = "postgresql://u@h/db";
    assert_eq!(Endpoint::parse(pg), Endpoint::Postgres(pg.into()));
    let my = "mysql://root@127.0.0.1:3306/natter";
    assert_eq!(Endpoint::parse(my), Endpoint::Mysql(my.into()));
    assert_eq!(
        Endpoint::parse("natter-data"),
        Endpoint::Sqlite(PathBuf::from("natter-data/natter.db"))
    );
}

#[test]
fn mentions_are_ids_separated_by_spaces() {
    let t = TABLES.iter().find(|t| t.name == "messages").unwrap();
    assert_eq!(ids_text(&[3, 14, 15]), "3 14 15");
    assert_eq!(parse_ids(t, 8, "3 14 15").unwrap(), vec![3, 14, 15]);
    assert_eq!(parse_ids(t, 8, "").unwrap(), Vec::<i64>::new());
    assert!(parse_ids(t, 8, "3 x").is_err());
}

#[tokio::test]
async fn a_copy_into_mysql_keeps_values_and_goes_on_from_the_copied_ids() {
    use mysql_async::prelude::Queryable;
    let Ok(base) = std::env::var("NATTER_TEST_MYSQL_URL") else {
        eprintln!("skipping a copy into MySQL: NATTER_TEST_MYSQL_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("natter.db");
    {
        let mut c = rusqlite::Connection::open(&db).unwrap();
        crate::sqlite::schema::migrate(&mut c).unwrap();
        c.execute_batch(
            "INSERT INTO users (id, username, password_hash, disabled, created_at_ms,
                email, banned_until_ms, ban_reason)
             VALUES (7, 'ann', 'h', 0, 1, 'ann@example.com', NULL, ''),
                    (41, 'ben', 'h', 1, 2, NULL, 99, 'spam 🥫')",
        )
        .unwrap();
    }
    let my = natter_testkit::my::Database::create(&base, "natter_mig_")
        .await
        .unwrap();
    let options = Options {
        resume: false,
        partitioning: crate::postgres::Partitioning::None,
    };
    let (from, to) = (Endpoint::Sqlite(db), Endpoint::Mysql(my.url.clone()));
    let report = copy(&from, &to, options, |_, _| {}).await.unwrap();
    assert!(report.tables.contains(&("users", 2)), "{report:?}");

    let mut conn = mysql_async::Conn::from_url(&my.url).await.unwrap();
    type User = (i64, bool, Option<String>, Option<i64>, String);
    let rows: Vec<User> = conn
        .query("SELECT id, disabled, email, banned_until_ms, ban_reason FROM users ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                7,
                false,
                Some("ann@example.com".into()),
                None,
                String::new()
            ),
            (41, true, None, Some(99), "spam 🥫".into()),
        ]
    );
    conn.query_drop(
        "INSERT INTO users (username, password_hash, created_at_ms, ban_reason)
         VALUES ('cat', 'h', 3, '')",
    )
    .await
    .unwrap();
    let next: Option<i64> = conn.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(next, Some(42));
    // Copying again is refused: the target holds data now.
    let again = copy(&from, &to, options, |_, _| {}).await;
    assert!(matches!(again, Err(CopyError::NotEmpty(3))), "{again:?}");
    let _ = conn.disconnect().await;
}
