//! Property tests of the hook parser: whatever reaches the hook port, the
//! parser answers without panicking; bodies nginx would send come back as
//! sent; and the first of repeated fields is the one that counts (nginx's
//! own fields come before the publisher's `?args`).
//!
//! `PROPTEST_CASES=1000000 cargo test --release --lib proptest` runs a
//! million cases of each (CI runs proptest's default of 256).

use proptest::prelude::*;

use super::*;

const KINDS: [HookKind; 9] = [
    HookKind::Connect,
    HookKind::Disconnect,
    HookKind::Publish,
    HookKind::PublishDone,
    HookKind::Done,
    HookKind::Play,
    HookKind::PlayDone,
    HookKind::Update,
    HookKind::RecordDone,
];

/// Form-encode like a browser or nginx would: unreserved bytes as is,
/// space as `+`, everything else `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn body(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn kind() -> impl Strategy<Value = HookKind> {
    (0..KINDS.len()).prop_map(|i| KINDS[i])
}

fn stream_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// Text biased towards what matters to the parser: separators, escapes,
/// plus signs and multi-byte characters.
fn tricky_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("&".to_string()),
            Just("=".to_string()),
            Just("%".to_string()),
            Just("+".to_string()),
            Just("%2".to_string()),
            Just("%zz".to_string()),
            Just("%00".to_string()),
            Just("%FF".to_string()),
            Just("name".to_string()),
            Just("clientid".to_string()),
            Just("app".to_string()),
            any::<char>().prop_map(String::from),
            "[a-z0-9]{1,8}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn proptest_hook_parse_never_panics_on_arbitrary_bytes(
        k in kind(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // The HTTP layer turns the body into text the same way.
        let form = String::from_utf8_lossy(&bytes);
        let _ = Hook::parse(k, &form);
        let _ = parse_form(&form);
    }

    #[test]
    fn proptest_hook_parse_never_panics_on_tricky_forms(k in kind(), form in tricky_text()) {
        if let Ok(h) = Hook::parse(k, &form) {
            // Whatever is accepted is what the rest of the daemon relies on.
            if k != HookKind::Connect && k != HookKind::Disconnect {
                prop_assert!(h.stream.is_some(), "accepted a hook without a stream");
                prop_assert!(h.get("name").is_some_and(valid_name));
            }
            prop_assert!(h.client_id.is_some() || k == HookKind::Connect);
        }
    }

    #[test]
    fn proptest_form_round_trips(
        pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..12),
    ) {
        prop_assert_eq!(parse_form(&body(&pairs)), pairs);
    }

    #[test]
    fn proptest_well_formed_hooks_round_trip(
        k in kind(),
        app in any::<String>(),
        name in stream_name(),
        client_id in any::<u64>(),
        addr in any::<String>(),
        extra in proptest::collection::vec(("[a-z]{1,10}", any::<String>()), 0..6),
    ) {
        let mut pairs = vec![
            ("app".to_string(), app.clone()),
            ("addr".to_string(), addr.clone()),
            ("clientid".to_string(), client_id.to_string()),
            ("call".to_string(), "publish".to_string()),
            ("name".to_string(), name.clone()),
        ];
        pairs.extend(extra.iter().cloned());
        let h = Hook::parse(k, &body(&pairs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(h.kind, k);
        prop_assert_eq!(&h.app, &app);
        // addr is kept only when it is an IP address (normalized).
        prop_assert_eq!(&h.addr, &super::client_ip(&addr));
        prop_assert_eq!(h.client_id, Some(client_id));
        prop_assert_eq!(h.stream.as_ref().map(|s| s.expose()), Some(name.as_str()));
        for (key, v) in &pairs {
            // get() gives the first value of a key.
            let first = pairs.iter().find(|(k2, _)| k2 == key).map(|(_, v2)| v2);
            prop_assert_eq!(h.get(key), first.map(String::as_str), "field {} = {:?}", key, v);
        }
    }

    #[test]
    fn proptest_first_value_wins(
        name in stream_name(),
        other_name in any::<String>(),
        app in "[a-z]{1,10}",
        other_app in any::<String>(),
        client_id in any::<u64>(),
        other_id in any::<String>(),
    ) {
        // nginx's fields, then a publisher's `?name=…&app=…&clientid=…`.
        let pairs = vec![
            ("app".to_string(), app.clone()),
            ("clientid".to_string(), client_id.to_string()),
            ("name".to_string(), name.clone()),
            ("name".to_string(), other_name),
            ("app".to_string(), other_app),
            ("clientid".to_string(), other_id),
        ];
        let h = Hook::parse(HookKind::Publish, &body(&pairs))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(h.stream.as_ref().map(|s| s.expose()), Some(name.as_str()));
        prop_assert_eq!(h.app, app);
        prop_assert_eq!(h.client_id, Some(client_id));
    }
}
