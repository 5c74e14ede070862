//! Property tests of the admin body parser: no body, query or route makes
//! it panic; every answer it refuses is a 4xx with a JSON error; and a
//! field a route does not know is refused (a typo must never silently mean
//! "use the default").
//!
//! `PROPTEST_CASES=1000000 cargo test --release --lib proptest` runs a
//! million cases of each (CI runs proptest's default of 256).

use proptest::prelude::*;
use serde_json::json;

use super::*;
use tiny_http::Method;

/// Every route with its method and a body it accepts.
fn routes() -> Vec<(&'static str, Method, Value)> {
    vec![
        ("/api/skip", Method::Post, json!({})),
        (
            "/api/kick",
            Method::Post,
            json!({"name": "a", "seconds": 5}),
        ),
        (
            "/api/block",
            Method::Post,
            json!({"name": "a", "seconds": 60}),
        ),
        ("/api/unblock", Method::Post, json!({"name": "a"})),
        (
            "/api/move",
            Method::Post,
            json!({"name": "a", "position": 1}),
        ),
        ("/api/slot/extend", Method::Post, json!({"seconds": -30})),
        ("/api/slot/extend", Method::Post, json!({"left": 10})),
        ("/api/slot/default", Method::Post, json!({"seconds": null})),
        (
            "/api/rejoin-block",
            Method::Post,
            json!({"enabled": true, "seconds": 9}),
        ),
        (
            "/api/streamers",
            Method::Post,
            json!({"name": "a", "slot_seconds": 30}),
        ),
        ("/api/streamers", Method::Delete, json!({"name": "a"})),
        (
            "/api/streamers/rotate-key",
            Method::Post,
            json!({"name": "a"}),
        ),
        (
            "/api/streamers/slot",
            Method::Post,
            json!({"name": "a", "slot_seconds": null}),
        ),
        (
            "/api/streamers/link",
            Method::Post,
            json!({"name": "a", "rotate": true}),
        ),
    ]
}

fn route() -> impl Strategy<Value = (&'static str, Method, Value)> {
    let all = routes();
    (0..all.len()).prop_map(move |i| all[i].clone())
}

fn any_route() -> impl Strategy<Value = (&'static str, Method)> {
    let paths = [
        "/api/skip",
        "/api/kick",
        "/api/block",
        "/api/unblock",
        "/api/move",
        "/api/slot/extend",
        "/api/slot/default",
        "/api/rejoin-block",
        "/api/streamers",
        "/api/streamers/rotate-key",
        "/api/streamers/slot",
        "/api/streamers/link",
        "/api/nope",
    ];
    let methods = [Method::Get, Method::Post, Method::Delete, Method::Put];
    (0..paths.len(), 0..methods.len()).prop_map(move |(p, m)| (paths[p], methods[m].clone()))
}

/// JSON values of every shape, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object whose keys are the fields routes know (and a few others),
/// with values of any shape.
fn field_soup() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("name".to_string()),
        Just("seconds".to_string()),
        Just("left".to_string()),
        Just("position".to_string()),
        Just("enabled".to_string()),
        Just("slot_seconds".to_string()),
        "[a-z_]{1,12}",
    ];
    proptest::collection::btree_map(keys, json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn check_refusal(r: &Reply) -> Result<(), TestCaseError> {
    prop_assert!((400..500).contains(&r.status), "status {}", r.status);
    let v: Value = serde_json::from_str(&r.body)
        .map_err(|e| TestCaseError::fail(format!("error body is not JSON: {e}")))?;
    prop_assert!(v["error"].is_string(), "{}", r.body);
    Ok(())
}

proptest! {
    #[test]
    fn proptest_admin_parse_never_panics_on_arbitrary_text(
        (path, method) in any_route(),
        body in any::<String>(),
        query in any::<String>(),
    ) {
        if let Err(r) = parse(path, &method, &body, &query) {
            check_refusal(&r)?;
        }
    }

    #[test]
    fn proptest_admin_parse_never_panics_on_any_json(
        (path, method) in any_route(),
        body in prop_oneof![json_value(), field_soup()],
    ) {
        if let Err(r) = parse(path, &method, &body.to_string(), "") {
            check_refusal(&r)?;
        }
    }

    #[test]
    fn proptest_admin_unknown_fields_are_refused(
        (path, method, good) in route(),
        field in "[a-zA-Z_]{1,16}",
        value in json_value(),
    ) {
        // The valid body is accepted as it is...
        prop_assert!(parse(path, &method, &good.to_string(), "").is_ok(), "{} {}", path, good);
        let known = ["name", "seconds", "left", "position", "enabled", "slot_seconds"];
        prop_assume!(!known.contains(&field.as_str()));
        // ...and refused with any field it does not know added.
        let mut body = good.as_object().cloned().unwrap_or_default();
        body.insert(field.clone(), value);
        match parse(path, &method, &Value::Object(body).to_string(), "") {
            Ok(call) => prop_assert!(false, "{} accepted unknown field {:?}: {:?}", path, field, call),
            Err(r) => {
                check_refusal(&r)?;
                prop_assert!(r.body.contains("unknown field"), "{}", r.body);
            }
        }
    }
}
