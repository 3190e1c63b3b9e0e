//! Fuzz targets for gossiped suspicion reports ([`decode_suspicions`]), on
//! stable Rust (proptest): a member can put any text under the
//! suspicion key.
//!
//! Named `fuzz_*` so `cargo test --workspace fuzz_` runs them with the
//! other decoders' targets; `PHIMON_FUZZ_CASES` sets the cases per target
//! (default 256). See docs/reliability.md for the nightly command.
//!
//! Arbitrary text and report-shaped text; encode then decode of
//! arbitrary ids. Decoding is total and capped, a decoded report only
//! contains ids that were in the text, and re-encoding it decodes to the
//! same report; encode then decode gives back exactly the valid ids.

use phimon_alert::{
    MAX_SUSPICIONS_VALUE_BYTES, SuspicionDecodeError, decode_suspicions, encode_suspicions,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Cases per target: `PHIMON_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("PHIMON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hostile_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "node-[0-9]{1,3}".prop_map(String::from),
        Just("a\"b".to_owned()),
        Just("line\nbreak".to_owned()),
        Just("back\\slash".to_owned()),
        Just("} 1\nphimon_fake_total 99".to_owned()),
        Just("é😀\u{0}\u{202e}".to_owned()),
        Just("x".repeat(255)),
        ".{1,40}".prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_suspicions_arbitrary_text(
        text in prop_oneof![
            ".{0,1100}".prop_map(String::from),
            (
                prop::sample::select(vec!["1:", "1+:", "2:", "", "1", ":", "1+"]),
                prop::collection::vec(hostile_id(), 0..80),
                prop::sample::select(vec![",", ",,", ", ", ";"]),
            )
                .prop_map(|(p, ids, sep)| format!("{p}{}", ids.join(sep))),
        ],
    ) {
        match decode_suspicions(&text) {
            Ok(r) => {
                prop_assert!(text.len() <= MAX_SUSPICIONS_VALUE_BYTES);
                for id in &r.suspects {
                    prop_assert!(!id.is_empty() && !id.contains(','));
                    prop_assert!(text.contains(id.as_str()));
                }
                // What was decoded is a report this node could have sent:
                // encoding it again decodes to the same suspects.
                let again = decode_suspicions(&encode_suspicions(r.suspects.iter().map(String::as_str)))
                    .unwrap();
                prop_assert_eq!(&again.suspects, &r.suspects);
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                // Errors quote at most a short excerpt of the input.
                prop_assert!(e.to_string().len() <= 512, "{}", e);
                if let SuspicionDecodeError::TooLong { len, max } = e {
                    prop_assert_eq!(len, text.len());
                    prop_assert!(len > max);
                }
            }
        }
    }

    #[test]
    fn fuzz_suspicions_encode_decode(ids in prop::collection::vec(hostile_id(), 0..120)) {
        let v = encode_suspicions(ids.iter().map(String::as_str));
        prop_assert!(v.len() <= MAX_SUSPICIONS_VALUE_BYTES, "{} bytes", v.len());
        let r = decode_suspicions(&v).unwrap();
        let given: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        for id in &r.suspects {
            prop_assert!(given.contains(id.as_str()), "{id:?} was never encoded");
        }
        if !r.truncated {
            let valid: BTreeSet<String> = ids
                .iter()
                .filter(|i| !i.is_empty() && !i.contains(',') && i.len() <= 253)
                .cloned()
                .collect();
            prop_assert_eq!(r.suspects, valid);
        }
    }
}
