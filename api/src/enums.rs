//! proto3 JSON enums: written as names; read as names or as numbers, which the Python SDK
//! sends (its REST transport asks for `$alt=json;enum-encoding=int`). Each `*_UNSPECIFIED`
//! value reads as the empty string, the platform's "not set".

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NameOrNumber {
    Name(String),
    Number(i64),
}

/// `google.cloud.aiplatform.v1.AcceleratorType`.
const ACCELERATOR_TYPES: &[(i64, &str)] = &[
    (0, "ACCELERATOR_TYPE_UNSPECIFIED"),
    (1, "NVIDIA_TESLA_K80"),
    (2, "NVIDIA_TESLA_P100"),
    (3, "NVIDIA_TESLA_V100"),
    (4, "NVIDIA_TESLA_P4"),
    (5, "NVIDIA_TESLA_T4"),
    (6, "TPU_V2"),
    (7, "TPU_V3"),
    (8, "NVIDIA_TESLA_A100"),
    (9, "NVIDIA_A100_80GB"),
    (10, "TPU_V4_POD"),
    (11, "NVIDIA_L4"),
    (12, "TPU_V5_LITEPOD"),
    (13, "NVIDIA_H100_80GB"),
    (14, "NVIDIA_H100_MEGA_80GB"),
    (15, "NVIDIA_H200_141GB"),
    (16, "NVIDIA_B200"),
    (17, "NVIDIA_GB200"),
    (18, "NVIDIA_RTX_PRO_6000"),
];

/// `google.cloud.aiplatform.v1.Model.DeploymentResourcesType`.
const DEPLOYMENT_RESOURCES_TYPES: &[(i64, &str)] = &[
    (0, "DEPLOYMENT_RESOURCES_TYPE_UNSPECIFIED"),
    (1, "DEDICATED_RESOURCES"),
    (2, "AUTOMATIC_RESOURCES"),
    (3, "SHARED_RESOURCES"),
];

fn name<E: serde::de::Error>(
    value: NameOrNumber,
    enum_name: &str,
    table: &[(i64, &str)],
) -> Result<String, E> {
    let name = match value {
        NameOrNumber::Name(name) => name,
        NameOrNumber::Number(n) => table
            .iter()
            .find(|(number, _)| *number == n)
            .map(|(_, name)| name.to_string())
            .ok_or_else(|| E::custom(format!("{n} is not a value of {enum_name}")))?,
    };
    Ok(if name.ends_with("_UNSPECIFIED") { String::new() } else { name })
}

/// An `AcceleratorType` field.
pub fn accelerator_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    name(NameOrNumber::deserialize(d)?, "AcceleratorType", ACCELERATOR_TYPES)
}

/// A repeated `DeploymentResourcesType` field.
pub fn deployment_resources_types<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<NameOrNumber>::deserialize(d)?
        .into_iter()
        .map(|v| name(v, "DeploymentResourcesType", DEPLOYMENT_RESOURCES_TYPES))
        .filter(|n| !matches!(n, Ok(s) if s.is_empty()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Spec {
        #[serde(default, deserialize_with = "super::accelerator_type")]
        accelerator: String,
        #[serde(default, deserialize_with = "super::deployment_resources_types")]
        types: Vec<String>,
    }

    fn parse(json: &str) -> Result<Spec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn enums_read_as_names_or_numbers() {
        assert_eq!(parse(r#"{"accelerator": 11}"#).unwrap().accelerator, "NVIDIA_L4");
        assert_eq!(parse(r#"{"accelerator": "NVIDIA_L4"}"#).unwrap().accelerator, "NVIDIA_L4");
        assert_eq!(parse(r#"{"accelerator": 0}"#).unwrap().accelerator, "");
        assert!(
            parse(r#"{"accelerator": 99}"#).unwrap_err().contains("99 is not a value of AcceleratorType")
        );
        assert_eq!(
            parse(r#"{"types": [1, "SHARED_RESOURCES", 0]}"#).unwrap().types,
            ["DEDICATED_RESOURCES", "SHARED_RESOURCES"]
        );
    }
}
