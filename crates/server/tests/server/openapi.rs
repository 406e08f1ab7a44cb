//! The served OpenAPI document describes exactly the router's routes, guards them as the
//! server does, and its error schema lists exactly the catalog's codes.

use std::collections::BTreeSet;

use confer_proto::ErrorCode;
use serde_json::Value;

/// Mirrors the router in `src/http/mod.rs`, as (method, path). A route added there must
/// be added here and in `openapi.json`; `router_source_matches_the_list` catches a
/// route that is missing here.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
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
    ("get", "/v1/node"),
    ("post", "/v1/node/drain"),
    ("post", "/v1/tokens"),
    ("post", "/v1/tokens/refresh"),
    ("post", "/v1/invites/exchange"),
    ("get", "/v1/signal"),
    ("get", "/j/{room}"),
];

/// Routes that need no API credentials; every other route is guarded by HTTP Basic.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/v1/openapi.json",
    "/v1/tokens/refresh",
    "/v1/invites/exchange",
    "/v1/signal",
    "/j/{room}",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn doc() -> Value {
    serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json is JSON")
}

fn routed() -> BTreeSet<(String, String)> {
    ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

/// Every (method, path) operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (key, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                ops.push((key.clone(), path.clone(), op));
            }
        }
    }
    ops
}

#[test]
fn is_openapi_3_1_with_every_route() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<_> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let missing: Vec<_> = routed().difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
}

#[test]
fn documents_no_route_the_router_lacks() {
    let doc = doc();
    let routed = routed();
    for (method, path, _) in operations(&doc) {
        assert!(
            routed.contains(&(method.clone(), path.clone())),
            "openapi.json documents {method} {path}, which is not routed"
        );
    }
    // Path items with no operation would document a path without saying how to call it.
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(item.as_object().unwrap().keys().any(|k| METHODS.contains(&k.as_str())), "{path} has no operation");
    }
}

/// The methods that `.route("{path}", ...)` registers in the router's source, so that
/// the list above cannot drift from the router unnoticed.
fn routes_in_source(source: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let chunks: Vec<&str> = source.split(".route(").skip(1).collect();
    for chunk in chunks {
        let chunk = chunk.split(".fallback(").next().unwrap();
        let path = chunk.trim_start().trim_start_matches('"');
        let path = &path[..path.find('"').expect("route path is a string literal")];
        let bytes = chunk.as_bytes();
        for method in ["get", "post", "put", "delete", "patch"] {
            let needle = format!("{method}(");
            let mut from = 0;
            while let Some(at) = chunk[from..].find(&needle) {
                let at = from + at;
                let before = if at == 0 { b' ' } else { bytes[at - 1] };
                if !(before.is_ascii_alphanumeric() || before == b'_' || before == b':') {
                    found.insert((method.to_string(), path.to_string()));
                }
                from = at + needle.len();
            }
        }
    }
    found
}

#[test]
fn router_source_matches_the_list() {
    let in_source = routes_in_source(include_str!("../../src/http/mod.rs"));
    assert_eq!(in_source, routed(), "the ROUTES list no longer mirrors src/http/mod.rs");
}

#[test]
fn guards_exactly_the_non_public_routes() {
    let doc = doc();
    let schemes = &doc["components"]["securitySchemes"]["basicAuth"];
    assert_eq!((schemes["type"].as_str(), schemes["scheme"].as_str()), (Some("http"), Some("basic")));
    let basic = serde_json::json!([{ "basicAuth": [] }]);
    assert_eq!(doc["security"], basic, "basicAuth is the default for every operation");
    for (method, path, op) in operations(&doc) {
        let security = op.get("security").unwrap_or(&doc["security"]);
        if PUBLIC.contains(&path.as_str()) {
            assert_eq!(security, &serde_json::json!([]), "{method} {path} needs no credentials");
        } else {
            assert_eq!(security, &basic, "{method} {path} needs the API key and secret");
            assert!(op["responses"].get("401").is_some(), "{method} {path} documents no 401");
        }
    }
}

#[test]
fn error_schema_lists_the_catalog() {
    let doc = doc();
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    let numbers: Vec<u64> = error["code"]["enum"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let catalog: Vec<u64> = ErrorCode::ALL.iter().map(|c| u64::from(c.number())).collect();
    assert_eq!(numbers, catalog);
    let names: Vec<&str> = error["name"]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let catalog: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names, catalog);
}

#[test]
fn error_responses_use_the_error_body_with_a_matching_status() {
    let doc = doc();
    let statuses: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.http_status().to_string()).collect();
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            let Some(schema) = response["content"].get("application/json").map(|c| &c["schema"]) else { continue };
            if status.starts_with('4') || status.starts_with('5') {
                assert!(statuses.contains(status), "{method} {path}: no catalog code maps to {status}");
                assert_eq!(schema["$ref"], "#/components/schemas/ErrorBody", "{method} {path} {status}");
            }
        }
    }
}

#[test]
fn every_reference_resolves_and_the_required_schemas_exist() {
    let doc = doc();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Room",
        "RoomPolicy",
        "RoomInfo",
        "CreateRoom",
        "UpdateRoom",
        "RoomPage",
        "CreateToken",
        "Grants",
        "TokenPair",
        "RefreshToken",
        "CreateInvite",
        "Invite",
        "ExchangeInvite",
        "SessionInfo",
        "SessionList",
        "ParticipantInfo",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    fn walk(v: &Value, schemas: &serde_json::Map<String, Value>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
                    assert!(schemas.contains_key(name), "dangling $ref {r}");
                }
                map.values().for_each(|v| walk(v, schemas));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, schemas)),
            _ => {}
        }
    }
    walk(&doc, schemas);
}
