//! `tramline verify` on a demo's SQLite files: exact after the demo; then, with rows of the
//! view deleted, added and changed behind its back, every difference reported — missing,
//! extra, stale version, wrong value — with exit status 1, as text and as JSON Lines.

use std::path::Path;
use std::process::Command;

fn verify(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let url = |store: &str| format!("sqlite://{}/{store}.db", dir.display());
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .arg("verify")
        .args(extra)
        .env("TRAMLINE_ORDER__DATABASE_URL", url("order"))
        .env("TRAMLINE_PAYMENT__DATABASE_URL", url("payment"))
        .env("TRAMLINE_DELIVERY__DATABASE_URL", url("delivery"))
        .env("TRAMLINE_VIEW__DATABASE_URL", url("view"))
        .output()
        .expect("the tramline binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn verify_reports_every_differing_row_and_column() {
    let dir = tempfile::tempdir().expect("a directory");
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .args(["demo", "--orders", "300", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("the demo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, stdout, stderr) = verify(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("the view is exact: 300 orders"), "{stdout}");

    // Behind the view's back: one row gone, one row for no order, one payment column
    // rolled back a version, one value changed at the right version.
    let url = format!("sqlite://{}/view.db", dir.path().display());
    let db = sqlx::SqlitePool::connect(&url).await.expect("opens");
    let ids: Vec<(String,)> =
        sqlx::query_as("SELECT order_id FROM order_status_view WHERE payment_version > 1 ORDER BY order_id LIMIT 3")
            .fetch_all(&db)
            .await
            .expect("reads");
    assert_eq!(ids.len(), 3, "the demo decided payments");
    let [(gone,), (stale,), (wrong,)] = [ids[0].clone(), ids[1].clone(), ids[2].clone()];
    for (sql, id) in [
        (
            "DELETE FROM order_status_view WHERE order_id = ?",
            gone.as_str(),
        ),
        (
            "UPDATE order_status_view SET payment_version = payment_version - 1 WHERE order_id = ?",
            stale.as_str(),
        ),
        (
            "UPDATE order_status_view SET customer_id = 'someone else' WHERE order_id = ?",
            wrong.as_str(),
        ),
        (
            "INSERT INTO order_status_view (order_id) VALUES (?)",
            "no-such-order",
        ),
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(&db)
            .await
            .expect("changes the view");
    }
    db.close().await;

    let (code, stdout, _) = verify(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains(&format!("{gone}\tmissing")), "{stdout}");
    assert!(stdout.contains("no-such-order\textra"), "{stdout}");
    assert!(
        stdout.contains(&format!("{stale}\tstale\tpaymentVersion")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{wrong}\twrong\tcustomerId: expected \"")),
        "{stdout}"
    );
    assert!(stdout.contains("the view differs: 4 of 300"), "{stdout}");

    let (code, stdout, _) = verify(dir.path(), &["--json"]);
    assert_eq!(code, Some(1));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["correct"], false);
    assert_eq!(summary["mismatched_rows"], 4);
    let kinds: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|d| d["kind"].as_str().expect("a kind"))
        .collect();
    for kind in ["missing", "extra", "stale", "wrong"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let stale_line = lines
        .iter()
        .find(|d| d["kind"] == "stale")
        .expect("the stale column");
    assert_eq!(stale_line["order_id"], stale.as_str());
    assert_eq!(
        stale_line["expected"].as_i64().expect("a version"),
        stale_line["found"].as_i64().expect("a version") + 1
    );
}
