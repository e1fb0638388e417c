//! The machine-type catalog: Vertex AI machine type names (`n1-standard-2`, `e2-micro`,
//! `g2-standard-4`, ...) mapped to the CPU, memory and accelerators a replica gets.
//!
//! The built-in catalog follows Vertex AI's prediction machine types; a deployment can load its
//! own catalog from YAML or JSON:
//!
//! ```yaml
//! default: e2-small          # optional; n1-standard-2 when omitted
//! machineTypes:
//!   - name: e2-small
//!     cpu: 500m              # Kubernetes quantity: "2", "500m", 0.5
//!     memory: 2Gi            # Kubernetes quantity: "2Gi", "7680Mi", bytes
//!     sharedCore: true
//!   - name: g2-standard-4
//!     cpu: 4
//!     memory: 16Gi
//!     accelerator: {type: NVIDIA_L4, count: 1}
//!   - name: n1-standard-4
//!     cpu: 4
//!     memory: 15Gi
//!     attachableAccelerators: [NVIDIA_TESLA_T4]
//! ```

pub mod prices;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use prices::PriceTable;

use crate::manifests::quantity;

/// Vertex AI's default machine type for a DeployedModel.
pub const DEFAULT_MACHINE_TYPE: &str = "n1-standard-2";

/// Accelerators a machine type has built in, or that a DeployedModel attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accelerator {
    /// Vertex `AcceleratorType` enum name, e.g. `NVIDIA_L4`.
    #[serde(rename = "type")]
    pub accelerator_type: String,
    pub count: u32,
}

/// One machine type: what a replica of it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMachineType", into = "RawMachineType")]
pub struct MachineType {
    pub name: String,
    /// vCPUs in millicores (`2000` = 2 vCPU).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Accelerators of this machine (built in, or attached by [`Catalog::resolve`]).
    pub accelerator: Option<Accelerator>,
    /// Accelerator types that may be attached to this machine type (N1's optional GPUs).
    pub attachable_accelerators: Vec<String>,
    /// A shared-core type (e2-micro, e2-small, e2-medium).
    pub shared_core: bool,
}

impl MachineType {
    /// The CPU as a Kubernetes quantity (`"2"`, `"250m"`).
    pub fn cpu_quantity(&self) -> String {
        quantity::format_cpu(self.cpu_millis)
    }

    /// The memory as a Kubernetes quantity (`"7680Mi"`, `"1Gi"`).
    pub fn memory_quantity(&self) -> String {
        quantity::format_memory(self.memory_bytes)
    }
}

/// The serialised form: quantities as strings (or numbers), camelCase names.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMachineType {
    name: String,
    cpu: quantity::Raw,
    memory: quantity::Raw,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accelerator: Option<Accelerator>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachable_accelerators: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    shared_core: bool,
}

impl TryFrom<RawMachineType> for MachineType {
    type Error = MachineError;

    fn try_from(raw: RawMachineType) -> Result<Self, MachineError> {
        let cpu = raw.cpu.to_string();
        let memory = raw.memory.to_string();
        let cpu_millis = quantity::parse_cpu_millis(&cpu)
            .map_err(|e| MachineError::Invalid(format!("machine type {}: cpu {cpu:?}: {e}", raw.name)))?;
        let memory_bytes = quantity::parse_bytes(&memory).map_err(|e| {
            MachineError::Invalid(format!("machine type {}: memory {memory:?}: {e}", raw.name))
        })?;
        Ok(MachineType {
            name: raw.name,
            cpu_millis,
            memory_bytes,
            accelerator: raw.accelerator,
            attachable_accelerators: raw.attachable_accelerators,
            shared_core: raw.shared_core,
        })
    }
}

impl From<MachineType> for RawMachineType {
    fn from(m: MachineType) -> Self {
        RawMachineType {
            cpu: quantity::Raw::Text(m.cpu_quantity()),
            memory: quantity::Raw::Text(m.memory_quantity()),
            name: m.name,
            accelerator: m.accelerator,
            attachable_accelerators: m.attachable_accelerators,
            shared_core: m.shared_core,
        }
    }
}

/// Errors of the machine-type catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineError {
    #[error("unknown machine type `{name}`; valid machine types: {}", valid.join(", "))]
    Unknown { name: String, valid: Vec<String> },
    #[error("machine type `{machine_type}` cannot have accelerator {accelerator}: {reason}")]
    Accelerator { machine_type: String, accelerator: String, reason: String },
    #[error("invalid machine-type catalog: {0}")]
    Invalid(String),
}

/// The machine types a platform offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    types: BTreeMap<String, MachineType>,
    default: MachineType,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCatalog {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    machine_types: Vec<MachineType>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const N1_GPUS: &[&str] = &["NVIDIA_TESLA_T4", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100"];

impl Catalog {
    /// Vertex AI's common prediction machine types, plus the shared-core E2 types so that several
    /// replicas fit on a laptop. Memory follows the Vertex table (GB there are GiB).
    pub fn builtin() -> Catalog {
        fn t(name: &str, vcpu_millis: u64, memory_mib: u64) -> MachineType {
            MachineType {
                name: name.to_string(),
                cpu_millis: vcpu_millis,
                memory_bytes: memory_mib * MIB,
                accelerator: None,
                attachable_accelerators: Vec::new(),
                shared_core: false,
            }
        }
        fn shared(m: MachineType) -> MachineType {
            MachineType { shared_core: true, ..m }
        }
        fn n1(m: MachineType) -> MachineType {
            MachineType { attachable_accelerators: N1_GPUS.iter().map(|s| s.to_string()).collect(), ..m }
        }
        fn gpu(m: MachineType, kind: &str, count: u32) -> MachineType {
            MachineType { accelerator: Some(Accelerator { accelerator_type: kind.to_string(), count }), ..m }
        }
        let gib = GIB / MIB;
        let types = vec![
            shared(t("e2-micro", 250, gib)),
            shared(t("e2-small", 500, 2 * gib)),
            shared(t("e2-medium", 1000, 4 * gib)),
            t("e2-standard-2", 2000, 8 * gib),
            t("e2-standard-4", 4000, 16 * gib),
            t("e2-standard-8", 8000, 32 * gib),
            t("e2-standard-16", 16000, 64 * gib),
            t("e2-highmem-2", 2000, 16 * gib),
            t("e2-highmem-4", 4000, 32 * gib),
            t("e2-highcpu-2", 2000, 2 * gib),
            t("e2-highcpu-4", 4000, 4 * gib),
            t("e2-highcpu-8", 8000, 8 * gib),
            n1(t("n1-standard-2", 2000, 7680)),
            n1(t("n1-standard-4", 4000, 15 * gib)),
            n1(t("n1-standard-8", 8000, 30 * gib)),
            n1(t("n1-standard-16", 16000, 60 * gib)),
            n1(t("n1-highmem-2", 2000, 13 * gib)),
            n1(t("n1-highmem-4", 4000, 26 * gib)),
            n1(t("n1-highmem-8", 8000, 52 * gib)),
            n1(t("n1-highcpu-4", 4000, 3686)),
            n1(t("n1-highcpu-8", 8000, 7373)),
            n1(t("n1-highcpu-16", 16000, 14746)),
            gpu(t("g2-standard-4", 4000, 16 * gib), "NVIDIA_L4", 1),
            gpu(t("g2-standard-8", 8000, 32 * gib), "NVIDIA_L4", 1),
            gpu(t("g2-standard-12", 12000, 48 * gib), "NVIDIA_L4", 1),
            gpu(t("g2-standard-16", 16000, 64 * gib), "NVIDIA_L4", 1),
            gpu(t("g2-standard-24", 24000, 96 * gib), "NVIDIA_L4", 2),
            gpu(t("g2-standard-32", 32000, 128 * gib), "NVIDIA_L4", 1),
            gpu(t("a2-highgpu-1g", 12000, 85 * gib), "NVIDIA_TESLA_A100", 1),
            gpu(t("a2-highgpu-2g", 24000, 170 * gib), "NVIDIA_TESLA_A100", 2),
            gpu(t("a2-ultragpu-1g", 12000, 170 * gib), "NVIDIA_A100_80GB", 1),
            gpu(t("a3-highgpu-1g", 26000, 234 * gib), "NVIDIA_H100_80GB", 1),
            gpu(t("a3-highgpu-2g", 52000, 468 * gib), "NVIDIA_H100_80GB", 2),
        ];
        let default = types
            .iter()
            .find(|m| m.name == DEFAULT_MACHINE_TYPE)
            .cloned()
            .unwrap_or_else(|| types[0].clone());
        Catalog { types: types.into_iter().map(|m| (m.name.clone(), m)).collect(), default }
    }

    /// A catalog from YAML (see the module docs for the format).
    pub fn from_yaml(text: &str) -> Result<Catalog, MachineError> {
        let raw: RawCatalog =
            serde_norway::from_str(text).map_err(|e| MachineError::Invalid(e.to_string()))?;
        Catalog::from_raw(raw)
    }

    /// A catalog from JSON (the same fields as YAML).
    pub fn from_json(text: &str) -> Result<Catalog, MachineError> {
        let raw: RawCatalog = serde_json::from_str(text).map_err(|e| MachineError::Invalid(e.to_string()))?;
        Catalog::from_raw(raw)
    }

    fn from_raw(raw: RawCatalog) -> Result<Catalog, MachineError> {
        let mut types = BTreeMap::new();
        for m in raw.machine_types {
            if m.name.is_empty() {
                return Err(MachineError::Invalid("a machine type has an empty name".into()));
            }
            if m.cpu_millis == 0 || m.memory_bytes == 0 {
                return Err(MachineError::Invalid(format!(
                    "machine type {} needs cpu and memory above 0",
                    m.name
                )));
            }
            if let Some(acc) = &m.accelerator
                && (acc.count == 0 || acc.accelerator_type.is_empty())
            {
                return Err(MachineError::Invalid(format!(
                    "machine type {}: an accelerator needs a type and a count above 0",
                    m.name
                )));
            }
            let name = m.name.clone();
            if types.insert(name.clone(), m).is_some() {
                return Err(MachineError::Invalid(format!("machine type {name} is listed twice")));
            }
        }
        if types.is_empty() {
            return Err(MachineError::Invalid("no machine types".into()));
        }
        let default = match raw.default {
            Some(name) => name,
            None if types.contains_key(DEFAULT_MACHINE_TYPE) => DEFAULT_MACHINE_TYPE.to_string(),
            None => {
                return Err(MachineError::Invalid(format!(
                    "`default` is required when the catalog has no {DEFAULT_MACHINE_TYPE}"
                )));
            }
        };
        let Some(default) = types.get(&default).cloned() else {
            return Err(MachineError::Invalid(format!(
                "the default machine type {default} is not in the catalog"
            )));
        };
        Ok(Catalog { types, default })
    }

    /// The catalog as YAML, in the format [`Catalog::from_yaml`] reads.
    pub fn to_yaml(&self) -> String {
        let raw = RawCatalog {
            default: Some(self.default.name.clone()),
            machine_types: self.types.values().cloned().collect(),
        };
        serde_norway::to_string(&raw).unwrap_or_default()
    }

    /// A machine type by name; the error lists the valid names.
    pub fn get(&self, name: &str) -> Result<&MachineType, MachineError> {
        self.types.get(name).ok_or_else(|| MachineError::Unknown {
            name: name.to_string(),
            valid: self.names().map(String::from).collect(),
        })
    }

    /// The machine type a DeployedModel gets when it names none.
    pub fn default_type(&self) -> &MachineType {
        &self.default
    }

    /// A Vertex `machineSpec`: the machine type (default when empty) with the accelerator it asks
    /// for. A machine with built-in accelerators accepts only those (or none named); other
    /// machine types accept the types they list as attachable.
    pub fn resolve(
        &self,
        machine_type: &str,
        accelerator_type: Option<&str>,
        accelerator_count: u32,
    ) -> Result<MachineType, MachineError> {
        let base = if machine_type.is_empty() { self.default_type() } else { self.get(machine_type)? };
        let wanted = accelerator_type.filter(|t| !t.is_empty() && *t != "ACCELERATOR_TYPE_UNSPECIFIED");
        let Some(kind) = wanted else {
            if accelerator_count > 0 && base.accelerator.is_none() {
                return Err(MachineError::Accelerator {
                    machine_type: base.name.clone(),
                    accelerator: format!("{accelerator_count}x (no type)"),
                    reason: "acceleratorCount needs an acceleratorType".into(),
                });
            }
            return Ok(base.clone());
        };
        let err = |reason: String| MachineError::Accelerator {
            machine_type: base.name.clone(),
            accelerator: format!("{}x {kind}", accelerator_count.max(1)),
            reason,
        };
        if let Some(built_in) = &base.accelerator {
            if built_in.accelerator_type != kind {
                return Err(err(format!(
                    "it has {}x {} built in",
                    built_in.count, built_in.accelerator_type
                )));
            }
            if accelerator_count != 0 && accelerator_count != built_in.count {
                return Err(err(format!(
                    "it has {}x {} built in",
                    built_in.count, built_in.accelerator_type
                )));
            }
            return Ok(base.clone());
        }
        if !base.attachable_accelerators.iter().any(|a| a == kind) {
            let valid = if base.attachable_accelerators.is_empty() {
                "it takes no accelerators".to_string()
            } else {
                format!("attachable: {}", base.attachable_accelerators.join(", "))
            };
            return Err(err(valid));
        }
        Ok(MachineType {
            accelerator: Some(Accelerator {
                accelerator_type: kind.to_string(),
                count: accelerator_count.max(1),
            }),
            ..base.clone()
        })
    }

    /// [`Catalog::resolve`] for the API's `machineSpec`.
    pub fn resolve_spec(&self, spec: &api::MachineSpec) -> Result<MachineType, MachineError> {
        let count = u32::try_from(spec.accelerator_count).map_err(|_| MachineError::Accelerator {
            machine_type: spec.machine_type.clone(),
            accelerator: format!("{}x {}", spec.accelerator_count, spec.accelerator_type),
            reason: "acceleratorCount cannot be negative".into(),
        })?;
        self.resolve(&spec.machine_type, Some(spec.accelerator_type.as_str()), count)
    }

    /// Names of all machine types, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// All machine types, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &MachineType> {
        self.types.values()
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} vCPU, {} memory", self.name, self.cpu_quantity(), self.memory_quantity())?;
        if let Some(acc) = &self.accelerator {
            write!(f, ", {}x {}", acc.count, acc.accelerator_type)?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_vertex_default_and_small_types() {
        let c = Catalog::builtin();
        assert_eq!(c.default_type().name, "n1-standard-2");
        let n1 = c.get("n1-standard-2").unwrap();
        assert_eq!((n1.cpu_millis, n1.memory_bytes), (2000, 7680 * MIB));
        let micro = c.get("e2-micro").unwrap();
        assert_eq!((micro.cpu_millis, micro.memory_bytes, micro.shared_core), (250, GIB, true));
        assert_eq!(c.get("e2-small").unwrap().cpu_quantity(), "500m");
        assert_eq!(c.get("e2-medium").unwrap().memory_quantity(), "4Gi");
        let g2 = c.get("g2-standard-4").unwrap();
        assert_eq!(g2.accelerator, Some(Accelerator { accelerator_type: "NVIDIA_L4".into(), count: 1 }));
        let a2 = c.get("a2-highgpu-1g").unwrap();
        assert_eq!(a2.accelerator.as_ref().map(|a| a.accelerator_type.as_str()), Some("NVIDIA_TESLA_A100"));
        for name in [
            "n1-standard-4",
            "n1-standard-8",
            "n1-highmem-2",
            "n1-highmem-4",
            "n1-highcpu-4",
            "e2-standard-2",
            "e2-standard-4",
            "e2-standard-8",
            "e2-highmem-2",
            "e2-highcpu-2",
        ] {
            assert!(c.get(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn unknown_type_names_the_valid_ones() {
        let err = Catalog::builtin().get("n9-huge").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("n9-huge") && msg.contains("n1-standard-2") && msg.contains("e2-micro"),
            "{msg}"
        );
    }

    #[test]
    fn catalog_from_yaml_and_json_round_trip() {
        let yaml = "
default: tiny
machineTypes:
  - name: tiny
    cpu: 100m
    memory: 256Mi
    sharedCore: true
  - name: gpu-box
    cpu: 8
    memory: 32Gi
    accelerator: {type: NVIDIA_L4, count: 2}
";
        let c = Catalog::from_yaml(yaml).unwrap();
        assert_eq!(c.default_type().cpu_millis, 100);
        assert_eq!(c.get("gpu-box").unwrap().memory_bytes, 32 * GIB);
        let again = Catalog::from_yaml(&c.to_yaml()).unwrap();
        assert_eq!(again, c);
        let json = r#"{"machineTypes":[{"name":"n1-standard-2","cpu":2,"memory":"7680Mi"}]}"#;
        let c = Catalog::from_json(json).unwrap();
        assert_eq!(c.default_type().memory_bytes, 7680 * MIB);
        assert_eq!(Catalog::from_yaml(&Catalog::builtin().to_yaml()).unwrap(), Catalog::builtin());
    }

    #[test]
    fn bad_catalogs_are_refused_with_a_reason() {
        for (text, want) in [
            ("machineTypes: []", "no machine types"),
            ("machineTypes: [{name: a, cpu: 1, memory: 1Gi}]", "`default` is required"),
            ("default: b\nmachineTypes: [{name: a, cpu: 1, memory: 1Gi}]", "not in the catalog"),
            ("default: a\nmachineTypes: [{name: a, cpu: lots, memory: 1Gi}]", "cpu"),
            (
                "default: a\nmachineTypes: [{name: a, cpu: 1, memory: 1Gi}, {name: a, cpu: 1, memory: 1Gi}]",
                "twice",
            ),
            ("default: a\nmachineTypes: [{name: a, cpu: 0, memory: 1Gi}]", "above 0"),
        ] {
            let err = Catalog::from_yaml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn resolve_attaches_or_checks_accelerators() {
        let c = Catalog::builtin();
        assert_eq!(c.resolve("", None, 0).unwrap().name, "n1-standard-2");
        let t4 = c.resolve("n1-standard-4", Some("NVIDIA_TESLA_T4"), 2).unwrap();
        assert_eq!(
            t4.accelerator,
            Some(Accelerator { accelerator_type: "NVIDIA_TESLA_T4".into(), count: 2 })
        );
        assert!(c.resolve("g2-standard-4", Some("NVIDIA_L4"), 1).is_ok());
        assert!(c.resolve("g2-standard-4", None, 0).unwrap().accelerator.is_some());
        assert!(c.resolve("g2-standard-4", Some("NVIDIA_TESLA_T4"), 1).is_err());
        assert!(c.resolve("g2-standard-4", Some("NVIDIA_L4"), 2).is_err());
        let err = c.resolve("e2-standard-2", Some("NVIDIA_L4"), 1).unwrap_err().to_string();
        assert!(err.contains("takes no accelerators"), "{err}");
        assert!(c.resolve("e2-standard-2", None, 1).is_err());
        let spec = api::MachineSpec {
            machine_type: "g2-standard-4".into(),
            accelerator_type: "NVIDIA_L4".into(),
            accelerator_count: 1,
            ..Default::default()
        };
        assert_eq!(c.resolve_spec(&spec).unwrap().name, "g2-standard-4");
        assert_eq!(c.resolve_spec(&api::MachineSpec::default()).unwrap().name, "n1-standard-2");
        let negative = api::MachineSpec { accelerator_count: -1, ..spec };
        assert!(c.resolve_spec(&negative).is_err());
    }
}
