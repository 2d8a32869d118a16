//! Enums that read case-insensitively, as Azure ML's YAML loader does.

use serde::{Deserialize, Deserializer, Serialize};
use sluice_domain::batch::{InputType, LoggingLevel, OutputAction};
use sluice_domain::{AuthMode, ModelType};
use utoipa::ToSchema;

/// Lowercases and drops `_` and `-`, so `AMLToken`, `aml_token` and `aml-token` compare equal.
fn fold(s: &str) -> String {
    s.chars().filter(|c| *c != '_' && *c != '-').map(|c| c.to_ascii_lowercase()).collect()
}

macro_rules! folded_enum {
    ($wire:ident => $domain:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $wire { $($variant),+ }

        impl $wire {
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn parse(s: &str) -> Option<Self> {
                let f = fold(s);
                $(if f == fold($text) { return Some(Self::$variant); })+
                None
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl<'de> Deserialize<'de> for $wire {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown value {s:?}: expected one of {}", Self::ALL.join(", ")
                    ))
                })
            }
        }

        impl From<$wire> for $domain {
            fn from(w: $wire) -> Self {
                match w { $($wire::$variant => $domain::$variant),+ }
            }
        }

        impl From<$domain> for $wire {
            fn from(d: $domain) -> Self {
                match d { $($domain::$variant => $wire::$variant),+ }
            }
        }
    };
}

folded_enum!(AuthModeWire => AuthMode { Key = "key", AmlToken = "aml_token", AadToken = "aad_token" });
folded_enum!(ModelTypeWire => ModelType {
    CustomModel = "custom_model",
    MlflowModel = "mlflow_model",
    TritonModel = "triton_model",
});
folded_enum!(OutputActionWire => OutputAction { AppendRow = "append_row", SummaryOnly = "summary_only" });
folded_enum!(LoggingLevelWire => LoggingLevel { Debug = "debug", Info = "info", Warning = "warning" });
folded_enum!(InputTypeWire => InputType { UriFolder = "uri_folder", UriFile = "uri_file" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_read_case_insensitively() {
        for s in ["key", "Key", "KEY"] {
            assert_eq!(AuthModeWire::parse(s), Some(AuthModeWire::Key));
        }
        for s in ["aml_token", "AMLToken", "amltoken"] {
            assert_eq!(AuthModeWire::parse(s), Some(AuthModeWire::AmlToken));
        }
        assert_eq!(ModelTypeWire::parse("Triton_Model"), Some(ModelTypeWire::TritonModel));
        let err = serde_json::from_str::<AuthModeWire>("\"password\"").unwrap_err();
        assert!(err.to_string().contains("expected one of key, aml_token, aad_token"), "{err}");
    }
}
