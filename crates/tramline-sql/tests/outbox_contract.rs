//! docs/OUTBOX.md quotes every outbox migration exactly, so the documented contract is the
//! DDL the migrations create.

use std::path::Path;

#[test]
fn the_documented_ddl_is_the_migrations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/OUTBOX.md")).expect("docs/OUTBOX.md");
    let mut quoted = 0;
    for dialect in ["sqlite", "mysql", "postgres"] {
        for schema in ["outbox", "eventuate"] {
            let dir = root.join("migrations").join(dialect).join(schema);
            for entry in std::fs::read_dir(&dir).expect("a migrations folder") {
                let path = entry.expect("an entry").path();
                let sql = std::fs::read_to_string(&path).expect("a migration");
                assert!(
                    doc.contains(sql.trim_end()),
                    "docs/OUTBOX.md does not quote {} as it is",
                    path.display()
                );
                quoted += 1;
            }
        }
    }
    assert_eq!(quoted, 6, "one migration per layout and dialect");
}
