//! The test harness itself: each test's database is its own, migrated, and gone afterwards.

use sqlx::Connection;

use crate::support::db::{self, TestDb};

async fn applied_migrations(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(db.pool())
        .await
        .expect("reading _sqlx_migrations")
}

#[tokio::test]
async fn each_test_gets_its_own_migrated_database() {
    let first = TestDb::new().await;
    let second = TestDb::new().await;

    assert_ne!(first.name(), second.name());
    let expected = ticketing_tracker::MIGRATOR.iter().count() as i64;
    assert!(expected > 0, "the crate embeds no migrations");
    assert_eq!(applied_migrations(&first).await, expected);
    assert_eq!(applied_migrations(&second).await, expected);

    // The pools really are on different databases: a table made in one is not in the other.
    sqlx::query("CREATE TABLE only_in_first (id int)")
        .execute(first.pool())
        .await
        .unwrap();
    let in_second: Option<String> = sqlx::query_scalar("SELECT to_regclass('only_in_first')::text")
        .fetch_one(second.pool())
        .await
        .unwrap();
    assert_eq!(in_second, None);
}

#[tokio::test]
async fn a_dropped_test_database_is_gone_from_the_server() {
    let db = TestDb::new().await;
    let name = db.name().to_owned();
    let server = db.server();
    assert!(server.database_exists(&name).await.unwrap());

    drop(db);

    assert!(!server.database_exists(&name).await.unwrap());
}

#[tokio::test]
async fn a_test_that_panics_still_drops_its_database() {
    // The panicking "test" runs on a thread and runtime of its own, as libtest would run it.
    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let db = TestDb::new().await;
            sender.send(db.name().to_owned()).unwrap();
            // A connection in use when the panic comes, as in a real failing test.
            let _held = db.pool().acquire().await.unwrap();
            panic!("a failing test");
        })
    })
    .join();

    assert!(outcome.is_err());
    let name = receiver.recv().expect("the database was created");
    assert!(!db::server().database_exists(&name).await.unwrap());
}

#[tokio::test]
async fn the_urls_lead_to_the_test_database_and_the_maintenance_database() {
    let db = TestDb::new().await;

    let mut own = sqlx::PgConnection::connect(&db.url()).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut own)
        .await
        .unwrap();
    assert_eq!(current, db.name());
    own.close().await.unwrap();

    let mut maintenance = sqlx::PgConnection::connect(&db.server_url()).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut maintenance)
        .await
        .unwrap();
    assert_ne!(current, db.name());
    maintenance.close().await.unwrap();
    assert_eq!(db.server_url(), db.server().url());
}

#[tokio::test]
async fn sql_runs_on_the_maintenance_database() {
    let server = db::server();
    let name = format!("harness_scratch_{:016x}", rand::random::<u64>());

    server
        .execute(&format!(r#"CREATE DATABASE "{name}""#))
        .await
        .unwrap();
    assert!(server.database_exists(&name).await.unwrap());
    server
        .execute(&format!(r#"DROP DATABASE "{name}""#))
        .await
        .unwrap();
    assert!(!server.database_exists(&name).await.unwrap());
    let mut connection = server.connect().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn database_url_wins_over_every_other_source_when_it_is_set() {
    let from_database_url = matches!(db::server().source(), db::Source::DatabaseUrl);

    let set = std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty());
    assert_eq!(from_database_url, set);
}
