//! The only module that touches serde_yaml (deprecated upstream), so it can
//! be swapped for another YAML crate in one place.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML document that does not fit the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(String);

/// Flow collections (`[`, `{`) nested deeper than this are refused before
/// the text reaches the parser: libyaml's scanner walks every open level
/// for each token, so its cost grows with the square of the depth (3,000
/// levels took a second). No file sipseal reads nests more than a few.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Parse a YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_depth(text)?;
    serde_yaml::from_str(text).map_err(|e| YamlError(e.to_string()))
}

/// Serialize `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_yaml::to_string(value).map_err(|e| YamlError(e.to_string()))
}

/// A configuration file as command-line flags: a mapping of long flag
/// names to values (`listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]`,
/// `identity: keys/proxy-a`, `record-route: true`) becomes `--listen
/// udp:... --listen tcp:... --identity keys/proxy-a --record-route`; a
/// `false` flag is left out.
pub fn flag_args(text: &str) -> Result<Vec<String>, YamlError> {
    check_depth(text)?;
    let map: serde_yaml::Mapping =
        serde_yaml::from_str(text).map_err(|e| YamlError(e.to_string()))?;
    let scalar = |key: &str, v: &serde_yaml::Value| -> Result<String, YamlError> {
        match v {
            serde_yaml::Value::String(s) => Ok(s.clone()),
            serde_yaml::Value::Number(n) => Ok(n.to_string()),
            _ => Err(YamlError(format!(
                "{key}: give a string, a number, true/false, or a list of them"
            ))),
        }
    };
    let mut out = Vec::new();
    for (k, v) in &map {
        let key = k
            .as_str()
            .ok_or_else(|| YamlError("every key is a flag name (without --)".into()))?;
        let flag = format!("--{}", key.trim_start_matches('-'));
        match v {
            serde_yaml::Value::Bool(true) => out.push(flag),
            serde_yaml::Value::Bool(false) => {}
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(key, item)?);
                }
            }
            other => {
                out.push(flag);
                out.push(scalar(key, other)?);
            }
        }
    }
    Ok(out)
}

/// Refuse flow nesting deeper than [`MAX_FLOW_DEPTH`], in one pass. Every
/// bracket counts, quoted or not: a quote cannot hide nesting from the
/// check (a string with that many unclosed brackets is refused too).
fn check_depth(text: &str) -> Result<(), YamlError> {
    let mut depth = 0usize;
    for (line, l) in text.lines().enumerate() {
        for b in l.bytes() {
            match b {
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => continue,
            }
            if depth > MAX_FLOW_DEPTH {
                return Err(YamlError(format!(
                    "line {}: flow collections ([ ], {{ }}) nested deeper than {MAX_FLOW_DEPTH} levels",
                    line + 1
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_reads_as_flags() {
        let args = flag_args(
            "listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]\nidentity: keys/proxy-a\nrecord-route: true\ntrial: false\nrate-limit: 50\n",
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "--listen",
                "udp:127.0.0.1:5060",
                "--listen",
                "tcp:127.0.0.1:5060",
                "--identity",
                "keys/proxy-a",
                "--record-route",
                "--rate-limit",
                "50"
            ]
        );
        assert!(flag_args("next: {a: b}\n").is_err());
        assert!(flag_args("- a\n").is_err());
    }

    /// The fuzz finding: 3,000 nested `{` (fuzz/seeds/yaml/deep-flow.yaml)
    /// kept libyaml busy for a second; now refused before parsing.
    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let found = include_str!("../fuzz/seeds/yaml/deep-flow.yaml");
        let err = from_str::<serde_yaml::Value>(found).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: flow collections ([ ], { }) nested deeper than 64 levels"
        );
        // At the limit it parses.
        let ok = format!("a: {}1{}", "[".repeat(64), "]".repeat(64));
        assert!(from_str::<serde_yaml::Value>(&ok).is_ok());
        let deep = format!("a: {}1{}", "[".repeat(65), "]".repeat(65));
        assert!(from_str::<serde_yaml::Value>(&deep).is_err());
        // A quote does not hide nesting.
        let quoted = format!("a: it's {}", "{".repeat(100));
        assert!(
            from_str::<serde_yaml::Value>(&quoted)
                .unwrap_err()
                .to_string()
                .contains("nested deeper")
        );
    }
}
