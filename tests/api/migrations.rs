//! Migrations on a live table: a migration that needs a table lock held by a long transaction
//! (a row an operator holds locked) waits at most its lock timeout, is rolled back and tried
//! again, so that the workers' queries never queue behind it; once the lock is gone it lands.

use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::app::TestApp;

/// The price column's migration, which the test undoes so that `migrate` has one to apply
/// (sqlx applies every migration it has not applied, in order, whatever came after it).
const PRICE_MIGRATION: i64 = 20261204000011;

/// Undoes the price column's migration.
async fn one_migration_behind(app: &TestApp) -> i64 {
    sqlx::query("ALTER TABLE ticketing_jobs DROP COLUMN price")
        .execute(app.pool())
        .await
        .unwrap();
    let undone = sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(PRICE_MIGRATION)
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(undone.rows_affected(), 1, "the price migration was applied");
    PRICE_MIGRATION
}

#[tokio::test]
async fn a_migration_behind_a_locked_row_lets_the_workers_queries_go_on_and_lands_once_it_is_released(
) {
    let app = TestApp::new().await;
    let held = app.order_and_enqueue(1, None, serde_json::json!({})).await;
    let other = app.order_and_enqueue(1, None, serde_json::json!({})).await;
    let newest = one_migration_behind(&app).await;

    // An operator's session holds one row locked, its transaction open.
    let mut operator = sqlx::PgConnection::connect(&app.db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut operator).await.unwrap();
    sqlx::query("SELECT 1 FROM ticketing_jobs WHERE order_no = $1 FOR UPDATE")
        .bind(&held)
        .execute(&mut operator)
        .await
        .unwrap();

    let mut cmd = crate::cli::command(Some(&app.db.url()));
    cmd.env("APP_LOG__LEVEL", "warn").arg("migrate");
    let migrate = cmd.spawn().expect("the binary starts");
    // The migration waits for its lock; a worker's write of another row meanwhile is not
    // queued behind it for longer than the migration's lock timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let write =
            sqlx::query("UPDATE ticketing_jobs SET priority = priority WHERE order_no = $1")
                .bind(&other)
                .execute(app.pool());
        tokio::time::timeout(Duration::from_secs(4), write)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "a write waited {:?} behind the migration",
                    started.elapsed()
                )
            })
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE version = $1")
            .bind(newest)
            .fetch_optional(app.pool())
            .await
            .unwrap();
    assert_eq!(applied, None, "not applied while the lock is held");

    sqlx::query("ROLLBACK")
        .execute(&mut operator)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), migrate.wait_with_output())
        .await
        .expect("migrate ends once the lock is released")
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("trying again"), "{log}");
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE version = $1")
            .bind(newest)
            .fetch_optional(app.pool())
            .await
            .unwrap();
    assert_eq!(applied, Some(newest));
}
