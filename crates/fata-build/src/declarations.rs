//! What an app declares in its `Cargo.toml`, read into the manifest `fata build` embeds:
//!
//! ```toml
//! [package.metadata.fata]
//! coalesce-us = 1000                 # the app's coalescing interval (default 0: none)
//!
//! [package.metadata.fata.devices]    # the devices the app takes, by kind and name
//! net = ["service"]
//! block = ["storage"]
//! kv = ["files"]
//! ```
//!
//! An app without a `devices` table takes no devices. Every mistake is an error that names the
//! key and what to write instead, so a typo never silently declares nothing.

use fata_device_spec::manifest::{Device, Kind, Manifest};
use serde_json::Value;

/// The keys `[package.metadata.fata]` may hold.
const KEYS: [&str; 3] = ["coalesce-us", "devices", "host-files"];

/// The key-value store through which `fata run` hands an app its host files
/// (`[package.metadata.fata.host-files]`).
const HOST_FILES_STORE: &str = "files";

/// Reads the manifest from a package's `[package.metadata.fata]` table (`Value::Null` when it
/// has none); the error says what is wrong and what to write.
pub(crate) fn manifest(metadata: &Value) -> Result<Manifest, String> {
    let table = match metadata {
        Value::Null => return Ok(Manifest::default()),
        Value::Object(table) => table,
        other => {
            return Err(format!(
                "[package.metadata.fata] is {other}: make it a table (coalesce-us = N, devices, \
                 host-files)"
            ));
        }
    };
    if let Some(key) = table.keys().find(|key| !KEYS.contains(&key.as_str())) {
        return Err(format!(
            "[package.metadata.fata] has {key:?}, which Fata does not read: the keys are {}",
            KEYS.join(", ")
        ));
    }
    let coalesce_us = match table.get("coalesce-us") {
        None => 0,
        Some(value) => value.as_u64().ok_or_else(|| {
            format!(
                "[package.metadata.fata] coalesce-us = {value}: give a whole number of \
                 microseconds, as coalesce-us = 1000"
            )
        })?,
    };
    let devices = match table.get("devices") {
        None => Vec::new(),
        Some(devices) => declared_devices(devices)?,
    };
    if table.contains_key("host-files")
        && !devices.contains(&Device::new(Kind::Kv, HOST_FILES_STORE))
    {
        return Err(format!(
            "[package.metadata.fata.host-files] hands the prepared files to the app as its \
             key-value store {HOST_FILES_STORE:?}: declare it, with kv = [{HOST_FILES_STORE:?}] \
             under [package.metadata.fata.devices]"
        ));
    }
    let optional = match table.get("devices") {
        None => Vec::new(),
        Some(devices) => optional_devices(devices)?,
    };
    Manifest::new(devices, coalesce_us)
        .and_then(|manifest| manifest.with_optional(optional))
        .map_err(|e| format!("[package.metadata.fata.devices]: {e}"))
}

/// The key of a `devices` table that lists the declared devices the app can run without.
const OPTIONAL: &str = "optional";

/// The names under `optional` in a `[package.metadata.fata.devices]` table.
fn optional_devices(devices: &Value) -> Result<Vec<String>, String> {
    let Some(names) = devices.get(OPTIONAL) else {
        return Ok(Vec::new());
    };
    names
        .as_array()
        .filter(|names| names.iter().all(Value::is_string))
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .ok_or_else(|| {
            format!(
                "[package.metadata.fata.devices] optional = {names}: give a list of the names of \
                 declared devices the app runs without, as optional = [\"site\"]"
            )
        })
}

/// The devices of a `[package.metadata.fata.devices]` table, kind by kind.
fn declared_devices(devices: &Value) -> Result<Vec<Device>, String> {
    let example = "as net = [\"service\"], block = [\"storage\"] or kv = [\"files\"]";
    let Some(table) = devices.as_object() else {
        return Err(format!(
            "[package.metadata.fata] devices = {devices}: make it a table of names by kind, \
             {example}"
        ));
    };
    if let Some(key) = table.keys().find(|key| {
        key.as_str() != OPTIONAL && !Kind::ALL.iter().any(|kind| kind.key() == key.as_str())
    }) {
        return Err(format!(
            "[package.metadata.fata.devices] has {key:?}: the kinds of device are net, block \
             and kv (and `optional` names those the app runs without)"
        ));
    }
    // Kind by kind, in the order messages list them, each kind's names as the app lists them.
    let mut declared = Vec::new();
    for kind in Kind::ALL {
        let Some(names) = table.get(kind.key()) else {
            continue;
        };
        let names = names
            .as_array()
            .filter(|names| names.iter().all(Value::is_string))
            .ok_or_else(|| {
                format!(
                    "[package.metadata.fata.devices] {} = {names}: give a list of the names \
                     the app takes its devices by, {example}",
                    kind.key()
                )
            })?;
        declared.extend(
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|name| Device::new(kind, name)),
        );
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declarations_become_a_manifest() {
        let manifest = manifest(&json!({
            "coalesce-us": 1000,
            "devices": { "net": ["service"], "kv": ["files"] },
            "host-files": { "--zone": "raw" },
        }))
        .unwrap();
        assert_eq!(manifest.coalesce_us(), 1000);
        assert_eq!(
            manifest.devices(),
            [
                Device::new(Kind::Net, "service"),
                Device::new(Kind::Kv, "files")
            ]
        );
        assert_eq!(super::manifest(&Value::Null), Ok(Manifest::default()));
        let storage = super::manifest(&json!({ "devices": { "block": ["storage", "log"] } }));
        assert_eq!(storage.unwrap().devices().len(), 2);
        let site = super::manifest(&json!({
            "devices": { "net": ["service"], "kv": ["site"], "optional": ["site"] }
        }))
        .unwrap();
        assert!(site.is_optional(&Device::new(Kind::Kv, "site")));
        assert!(!site.is_optional(&Device::new(Kind::Net, "service")));
        let given = [Device::new(Kind::Net, "service")];
        assert_eq!(site.check(&given, false), Ok(()));
        let again = fata_device_spec::manifest::Manifest::parse(&site.to_descriptor()).unwrap();
        assert_eq!(again, site);
    }

    #[test]
    fn mistakes_say_what_to_write() {
        let refused = |metadata: Value, needle: &str| {
            let error = manifest(&metadata).unwrap_err();
            assert!(error.contains(needle), "{metadata}: {error}");
        };
        refused(
            json!({ "coalesce-us": -1 }),
            "a whole number of microseconds",
        );
        refused(
            json!({ "coalesce-us": "1ms" }),
            "a whole number of microseconds",
        );
        refused(
            json!({ "device": {} }),
            "\"device\", which Fata does not read",
        );
        refused(
            json!({ "devices": ["service"] }),
            "a table of names by kind",
        );
        refused(json!({ "devices": { "disk": ["a"] } }), "net, block and kv");
        refused(
            json!({ "devices": { "net": ["a"], "optional": ["b"] } }),
            "not declared",
        );
        refused(
            json!({ "devices": { "net": "service" } }),
            "give a list of the names",
        );
        refused(
            json!({ "devices": { "net": [1] } }),
            "give a list of the names",
        );
        refused(
            json!({ "devices": { "net": ["a"], "kv": ["a"] } }),
            "two devices are named \"a\"",
        );
        refused(
            json!({ "devices": { "kv": ["sixteen-bytes-xx"] } }),
            "is not usable",
        );
        refused(
            json!({ "host-files": { "--zone": "raw" } }),
            "declare it, with kv = [\"files\"]",
        );
        refused(json!(3), "make it a table");
    }
}
