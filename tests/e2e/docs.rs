//! The README's configuration reference matches the config crate: every
//! key it lists exists with the default it states, and every key the
//! schema has is listed. A new key or a changed default fails here until
//! the README says so.

use phimon_config::{Config, WebhookSection};
use std::collections::BTreeMap;

/// Flattens a TOML table into `section.key` -> value.
fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// `key -> default cell` of the README's reference table.
fn readme_table() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- config-reference")
        .expect("README lacks the config-reference marker");
    readme[start..]
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
            )
        })
        .collect()
}

#[test]
fn readme_config_reference_matches_the_schema() {
    let table = readme_table();
    assert!(table.len() > 20, "{table:?}");

    let mut schema = BTreeMap::new();
    let mut config = Config::default();
    config.alert.webhooks.clear();
    flatten("", &toml::Value::try_from(&config).unwrap(), &mut schema);
    schema.remove("alert.webhook");
    let hook: WebhookSection = toml::from_str("name = \"x\"\nurl = \"https://x/\"").unwrap();
    let mut hook_keys = BTreeMap::new();
    flatten(
        "alert.webhook[]",
        &toml::Value::try_from(&hook).unwrap(),
        &mut hook_keys,
    );
    schema.extend(hook_keys);

    // Keys without a default value (required, or optional and unset).
    let valueless = [
        "node.id",
        "node.advertise",
        "tls.ca",
        "tls.cert",
        "tls.key",
        "tls.crl",
        "alert.webhook[].name",
        "alert.webhook[].url",
        "alert.webhook[].secret_file",
        "alert.webhook[].secret_env",
    ];
    for (key, value) in &schema {
        let Some(doc) = table.get(key) else {
            panic!("README's config reference lacks `{key}` (default {value})");
        };
        if valueless.contains(&key.as_str()) {
            assert!(doc == "required" || doc == "none", "{key}: {doc}");
        } else {
            assert_eq!(
                doc,
                &value.to_string(),
                "README states the wrong default for {key}"
            );
        }
    }
    for key in table.keys() {
        assert!(
            schema.contains_key(key) || valueless.contains(&key.as_str()),
            "README documents `{key}`, which the config crate does not have"
        );
    }
}
