//! `manifold supabase init` prints the DDL, and with --database-url applies it (twice, safely).

use manifold_core::testdb::TempDatabase;
use sqlx::Row;

#[tokio::test]
async fn supabase_init_prints_and_applies_the_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .args(["supabase", "init", "--schema", "public"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ddl = String::from_utf8_lossy(&out.stdout);
    assert!(ddl.contains("terra_data_payloads"), "{ddl}");

    let db = TempDatabase::create().await;
    for _ in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_manifold"))
            .args([
                "supabase",
                "init",
                "--schema",
                "public",
                "--database-url",
                &db.url,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    for t in ["terra_data_payloads", "terra_misc_payloads", "terra_users"] {
        assert!(tables.iter().any(|x| x == t), "{t} missing: {tables:?}");
    }
    pool.close().await;
}
