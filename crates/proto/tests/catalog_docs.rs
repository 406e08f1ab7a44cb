//! `docs/protocol.md` lists every error code with its name and HTTP status; this keeps
//! the table and the catalog from drifting apart.

use confer_proto::ErrorCode;

#[test]
fn protocol_doc_lists_every_error_code() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| ") && l.contains('`')).collect();
    for &code in ErrorCode::ALL {
        let row = format!("| {} | `{}` | {} |", code.number(), code.name(), code.http_status());
        assert!(rows.iter().any(|r| r.starts_with(&row)), "docs/protocol.md lacks the row {row}");
    }
    let listed = rows.iter().filter(|r| r.split('|').nth(1).is_some_and(|c| c.trim().parse::<u16>().is_ok())).count();
    assert_eq!(listed, ErrorCode::ALL.len(), "docs/protocol.md lists codes that the catalog does not have");
}
