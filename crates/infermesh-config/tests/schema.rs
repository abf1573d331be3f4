//! `docs/mesh.schema.json`, the file editors point at, is exactly what
//! `infermesh_config::json_schema_text()` builds (and `infermesh schema` prints).
//! After a deliberate change to the readers or the schema,
//! `INFERMESH_BLESS=1 cargo test -p infermesh-config --test schema` rewrites it;
//! review the diff before keeping it.

use std::path::Path;

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/mesh.schema.json");
    let built = infermesh_config::json_schema_text();
    if std::env::var_os("INFERMESH_BLESS").is_some() {
        std::fs::write(&path, &built).expect("writable docs/mesh.schema.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == built,
        "{} is not what json_schema() builds: run \
         INFERMESH_BLESS=1 cargo test -p infermesh-config --test schema and review the diff",
        path.display()
    );
}
