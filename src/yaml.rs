//! The only module that touches serde_yaml (deprecated upstream), so it can
//! be swapped for another YAML crate in one place.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML document that does not fit the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(String);

/// Parse a YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_yaml::from_str(text).map_err(|e| YamlError(e.to_string()))
}

/// Serialize `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_yaml::to_string(value).map_err(|e| YamlError(e.to_string()))
}
