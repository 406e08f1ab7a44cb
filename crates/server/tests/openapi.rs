//! The served OpenAPI document describes exactly the router's routes, and its error
//! schema lists exactly the catalog's codes.

use std::collections::BTreeSet;

use confer_proto::ErrorCode;

/// Mirrors `src/http/mod.rs`'s router; a route added there must be added here and in
/// `openapi.json`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/rooms"),
    ("get", "/v1/rooms"),
    ("get", "/v1/rooms/{id}"),
    ("put", "/v1/rooms/{id}"),
    ("delete", "/v1/rooms/{id}"),
    ("post", "/v1/rooms/{id}/invites"),
    ("get", "/v1/rooms/{id}/session"),
    ("delete", "/v1/rooms/{id}/session"),
    ("delete", "/v1/rooms/{id}/participants/{participant}"),
    ("get", "/v1/sessions"),
    ("post", "/v1/tokens"),
    ("post", "/v1/tokens/refresh"),
    ("post", "/v1/invites/exchange"),
    ("get", "/v1/signal"),
];

fn doc() -> serde_json::Value {
    serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json is JSON")
}

#[test]
fn documents_exactly_the_routes() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<_> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, routed);
}

#[test]
fn router_source_has_the_listed_paths() {
    let source = include_str!("../src/http/mod.rs");
    for (_, path) in ROUTES {
        assert!(source.contains(&format!("\"{path}\"")), "router lacks {path}");
    }
}

#[test]
fn error_schema_lists_the_catalog() {
    let doc = doc();
    let listed: Vec<u64> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let catalog: Vec<u64> = ErrorCode::ALL.iter().map(|c| c.number() as u64).collect();
    assert_eq!(listed, catalog);
}
