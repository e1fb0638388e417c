//! Fields of Vertex AI's messages that this platform does not model. Vertex's own tools send
//! some of them (a read-modify-write sends back output-only fields; options such as an
//! explanation spec or a reservation), so they are not refused wholesale: a field that would
//! change what Vertex does is refused with a 400 that says why, unless it holds its default
//! value (which changes nothing); a field that Vertex ignores on input (output-only fields) or
//! that only describes is ignored with a logged warning. A name that is no field of the message
//! at all is refused, as Vertex refuses it.
//!
//! Each message with such fields carries an [`Unmodelled`] field, flattened: serde hands it the
//! keys the message does not model, and it checks them against the message's table here. The
//! messages whose every field the platform models keep `deny_unknown_fields`.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The fields of a message that the platform does not model, checked and dropped: holds
/// nothing. Flatten it into a message with one of this module's checks as `deserialize_with`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unmodelled;

impl Serialize for Unmodelled {
    /// Nothing: flattened, it adds no field.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

/// What the platform does with a Vertex field it does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    /// Honouring it would change behaviour, and the platform cannot: 400, with why and what to
    /// do instead. Unless it holds its default value.
    Refuse(&'static str),
    /// Vertex ignores it on input (output only), or it only describes: a logged warning.
    Ignore(&'static str),
}

use Treatment::{Ignore, Refuse};

const OUTPUT_ONLY: &str = "output only";

const MODEL: &[(&str, Treatment)] = &[
    (
        "explanationSpec",
        Refuse("explanations are not supported; upload the model without an explanation spec"),
    ),
    (
        "encryptionSpec",
        Refuse(
            "customer-managed encryption keys are not supported; artifacts are kept in the platform's artifact store",
        ),
    ),
    ("defaultCheckpointId", Refuse("model checkpoints are not supported")),
    ("metadataSchemaUri", Ignore("AutoML metadata is not used")),
    ("metadata", Ignore("AutoML metadata is not used")),
    ("pipelineJob", Ignore("it only describes where the model came from")),
    ("dataStats", Ignore("it only describes the training data")),
    ("baseModelSource", Ignore("it only describes where the model came from")),
    ("supportedExportFormats", Ignore(OUTPUT_ONLY)),
    ("trainingPipeline", Ignore(OUTPUT_ONLY)),
    ("supportedInputStorageFormats", Ignore(OUTPUT_ONLY)),
    ("supportedOutputStorageFormats", Ignore(OUTPUT_ONLY)),
    ("modelSourceInfo", Ignore(OUTPUT_ONLY)),
    ("originalModelInfo", Ignore(OUTPUT_ONLY)),
    ("metadataArtifact", Ignore(OUTPUT_ONLY)),
    ("satisfiesPzs", Ignore(OUTPUT_ONLY)),
    ("satisfiesPzi", Ignore(OUTPUT_ONLY)),
    ("checkpoints", Ignore(OUTPUT_ONLY)),
];

const CONTAINER_SPEC: &[(&str, Treatment)] =
    &[("invokeRoutePrefix", Refuse("invoke routes are not supported; serve predictions on predictRoute"))];

const PRIVATE_NETWORK: &str =
    "private networking is this platform's `access: PRIVATE` (served on --private-listen); leave this out";

const ENDPOINT: &[(&str, Treatment)] = &[
    ("encryptionSpec", Refuse("customer-managed encryption keys are not supported")),
    ("network", Refuse(PRIVATE_NETWORK)),
    ("enablePrivateServiceConnect", Refuse(PRIVATE_NETWORK)),
    ("privateServiceConnectConfig", Refuse(PRIVATE_NETWORK)),
    (
        "dedicatedEndpointEnabled",
        Refuse(
            "every endpoint is served at the platform's own URL (see predictUri); there are no dedicated DNS names",
        ),
    ),
    ("genAiAdvancedFeaturesConfig", Refuse("generative AI features are not supported")),
    ("privateModelServerEnabled", Refuse(PRIVATE_NETWORK)),
    ("modelDeploymentMonitoringJob", Ignore(OUTPUT_ONLY)),
    ("dedicatedEndpointDns", Ignore(OUTPUT_ONLY)),
    ("satisfiesPzs", Ignore(OUTPUT_ONLY)),
    ("satisfiesPzi", Ignore(OUTPUT_ONLY)),
];

const DEPLOYED_MODEL: &[(&str, Treatment)] = &[
    ("sharedResources", Refuse("deployment resource pools are not supported; give dedicatedResources")),
    ("explanationSpec", Refuse("explanations are not supported; deploy without an explanation spec")),
    ("fasterDeploymentConfig", Refuse("fast tryout deployments are not supported")),
    ("checkpointId", Refuse("model checkpoints are not supported")),
    ("speculativeDecodingSpec", Refuse("speculative decoding is not supported")),
    ("disableExplanations", Ignore("the platform serves no explanations")),
    (
        "enableContainerLogging",
        Ignore("v1beta1's switch: replica output is always kept (disableContainerLogging is v1's)"),
    ),
    ("systemLabels", Ignore("it only labels billing")),
    ("privateEndpoints", Ignore(OUTPUT_ONLY)),
];

const MACHINE_SPEC: &[(&str, Treatment)] = &[
    ("gpuPartitionSize", Refuse("GPU partitions are not supported; give whole accelerators")),
    ("tpuTopology", Refuse("TPUs are not supported")),
    (
        "reservationAffinity",
        Refuse("reservations are not supported; replicas use the capacity the backend has"),
    ),
];

/// Checks `Model`'s unmodelled fields.
pub fn model<'de, D: Deserializer<'de>>(d: D) -> Result<Unmodelled, D::Error> {
    check(d, "Model", MODEL)
}

/// Checks `ModelContainerSpec`'s unmodelled fields.
pub fn container_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Unmodelled, D::Error> {
    check(d, "ModelContainerSpec", CONTAINER_SPEC)
}

/// Checks `Endpoint`'s unmodelled fields.
pub fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Unmodelled, D::Error> {
    check(d, "Endpoint", ENDPOINT)
}

/// Checks `DeployedModel`'s unmodelled fields.
pub fn deployed_model<'de, D: Deserializer<'de>>(d: D) -> Result<Unmodelled, D::Error> {
    check(d, "DeployedModel", DEPLOYED_MODEL)
}

/// Checks `MachineSpec`'s unmodelled fields.
pub fn machine_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Unmodelled, D::Error> {
    check(d, "MachineSpec", MACHINE_SPEC)
}

fn check<'de, D: Deserializer<'de>>(
    d: D,
    message: &str,
    table: &[(&str, Treatment)],
) -> Result<Unmodelled, D::Error> {
    let rest: BTreeMap<String, Value> = serde::Deserialize::deserialize(d)?;
    for (field, value) in &rest {
        match table.iter().find(|(name, _)| name == field).map(|(_, t)| *t) {
            Some(Refuse(_)) if is_default(value) => {}
            Some(Refuse(why)) => {
                return Err(D::Error::custom(format!(
                    "{message}.{field} is not supported by this platform: {why}"
                )));
            }
            Some(Ignore(why)) => {
                tracing::warn!(field = %format!("{message}.{field}"), "ignored a Vertex AI field: {why}");
            }
            None => return Err(D::Error::custom(unknown(message, field))),
        }
    }
    Ok(Unmodelled)
}

/// proto3 JSON's default values: a field that holds one asks for nothing.
fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn unknown(message: &str, field: &str) -> String {
    if field.contains('_') {
        let camel: String = field
            .split('_')
            .enumerate()
            .map(|(i, part)| {
                let mut chars = part.chars();
                match chars.next() {
                    Some(c) if i > 0 => c.to_uppercase().chain(chars).collect(),
                    _ => part.to_string(),
                }
            })
            .collect();
        return format!("unknown field `{field}` of {message}: fields are lowerCamelCase (`{camel}`)");
    }
    format!("unknown field `{field}` of {message}")
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Message {
        #[serde(default)]
        display_name: String,
        #[serde(flatten, deserialize_with = "endpoint")]
        unmodelled: Unmodelled,
    }

    fn parse(json: &str) -> Result<Message, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn fields_that_change_behaviour_are_refused_with_why() {
        let err = parse(r#"{"displayName": "e", "network": "projects/1/global/networks/n"}"#).unwrap_err();
        assert!(
            err.contains("Endpoint.network is not supported by this platform: private networking"),
            "{err}"
        );
    }

    #[test]
    fn defaults_output_only_fields_and_descriptions_pass() {
        let got = parse(
            r#"{"displayName": "e", "dedicatedEndpointEnabled": false, "network": "", "satisfiesPzs": true,
                "dedicatedEndpointDns": "x.prediction.vertexai.goog", "modelDeploymentMonitoringJob": "j"}"#,
        )
        .unwrap();
        assert_eq!(got.display_name, "e");
        assert_eq!(serde_json::to_value(&got).unwrap(), serde_json::json!({"displayName": "e"}));
    }

    #[test]
    fn names_that_are_no_field_are_refused() {
        assert!(
            parse(r#"{"displayNam": "e"}"#).unwrap_err().contains("unknown field `displayNam` of Endpoint")
        );
        let err = parse(r#"{"display_name": "e"}"#).unwrap_err();
        assert!(err.contains("fields are lowerCamelCase (`displayName`)"), "{err}");
    }
}
