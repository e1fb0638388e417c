//! This machine's NVIDIA GPUs: found by a [`GpuDetector`] (`nvidia-smi`; tests and hosts
//! without GPUs stand in), counted as capacity, and handed out whole to replicas of accelerator
//! machine types: `CUDA_VISIBLE_DEVICES` for processes, the engine's GPU flags for containers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_mib: u64,
}

/// Finds the machine's GPUs.
pub trait GpuDetector: Send + Sync {
    /// The GPUs, or why there are none to use.
    fn detect(&self) -> Result<Vec<Gpu>, String>;
}

/// Asks `nvidia-smi` (which ships with the driver and needs no library path, unlike NVML).
#[derive(Debug, Clone)]
pub struct NvidiaSmi {
    pub program: PathBuf,
}

impl GpuDetector for NvidiaSmi {
    fn detect(&self) -> Result<Vec<Gpu>, String> {
        let program = self.program.display();
        let out = Command::new(&self.program)
            .args(["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"])
            .env_remove("CUDA_VISIBLE_DEVICES")
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("{program} is not installed (no NVIDIA driver)"),
                _ => format!("cannot run {program}: {e}"),
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let first =
                err.lines().chain(stdout.lines()).map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
            return Err(format!("{program} failed ({}): {first}", out.status));
        }
        parse_query(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The lines of `nvidia-smi --query-gpu=index,uuid,name,memory.total
/// --format=csv,noheader,nounits`. Pure.
pub(crate) fn parse_query(text: &str) -> Result<Vec<Gpu>, String> {
    let mut gpus = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = || format!("unexpected nvidia-smi line `{line}`");
        if fields.len() < 4 {
            return Err(bad());
        }
        let index = fields[0].parse().map_err(|_| bad())?;
        let memory_mib = fields[fields.len() - 1].parse().map_err(|_| bad())?;
        // A name with commas spans the middle fields.
        let name = fields[2..fields.len() - 1].join(", ");
        gpus.push(Gpu { index, uuid: fields[1].to_string(), name, memory_mib });
    }
    Ok(gpus)
}

/// Whether a GPU is the kind a Vertex accelerator type names (`NVIDIA_L4` and an
/// `NVIDIA L4`, `NVIDIA_H100_80GB` and an `NVIDIA H100 80GB HBM3`). Pure.
pub(crate) fn is_kind(gpu: &Gpu, accelerator_type: &str) -> bool {
    let model = accelerator_type.trim_start_matches("NVIDIA_").trim_start_matches("TESLA_");
    let model = model.split('_').next().unwrap_or(model);
    !model.is_empty() && gpu.name.to_ascii_uppercase().split([' ', '-']).any(|w| w == model)
}

/// The GPUs of this machine and which replica holds each.
#[derive(Debug, Default)]
pub(crate) struct GpuPool {
    gpus: Vec<Gpu>,
    /// Why there are none, when there are none.
    none_because: Option<String>,
    taken: BTreeMap<u32, String>,
}

impl GpuPool {
    pub fn new(detected: Result<Vec<Gpu>, String>) -> GpuPool {
        match detected {
            Ok(gpus) if !gpus.is_empty() => GpuPool { gpus, ..Default::default() },
            Ok(_) => GpuPool { none_because: Some("nvidia-smi lists no GPU".into()), ..Default::default() },
            Err(why) => GpuPool { none_because: Some(why), ..Default::default() },
        }
    }

    pub fn total(&self) -> u32 {
        self.gpus.len() as u32
    }

    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// Why a deployment that needs `needed` GPUs in all, when others' replicas hold `held`,
    /// cannot have them; `None` when it can.
    pub fn shortage(&self, needed: u32, held: u32, accelerator: Option<&str>) -> Option<String> {
        if needed == 0 {
            return None;
        }
        let wanted = accelerator.map(|a| format!(" ({a})")).unwrap_or_default();
        if self.gpus.is_empty() {
            return Some(format!(
                "the deployment needs {needed} GPU(s){wanted}, and this machine has none that the platform can use ({}); \
                 choose a machine type without accelerators",
                self.none_because.as_deref().unwrap_or("no NVIDIA GPU found")
            ));
        }
        let free = self.total().saturating_sub(held);
        (needed > free).then(|| {
            format!(
                "the deployment needs {needed} GPU(s){wanted}; {free} of this machine's {} GPU(s) are free",
                self.total()
            )
        })
    }

    /// Gives `replica` `n` free GPUs (the lowest indices), or says how many are free.
    pub fn take(&mut self, replica: &str, n: u32) -> Result<Vec<Gpu>, String> {
        self.release(replica);
        let free: Vec<Gpu> =
            self.gpus.iter().filter(|g| !self.taken.contains_key(&g.index)).cloned().collect();
        if (free.len() as u32) < n {
            return Err(format!("waiting for {n} GPU(s): {} of {} are free", free.len(), self.total()));
        }
        let given: Vec<Gpu> = free.into_iter().take(n as usize).collect();
        for g in &given {
            self.taken.insert(g.index, replica.to_string());
        }
        Ok(given)
    }

    pub fn release(&mut self, replica: &str) {
        self.taken.retain(|_, r| r != replica);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a one-H100 host printed (../shared/reference/gpu-host.md), and a two-GPU one.
    const ONE_H100: &str = "0, GPU-7565b928-733a-7475-e1cc-26b2cb967075, NVIDIA H100 80GB HBM3, 81559\n";
    const TWO_L4: &str = "0, GPU-aaaa, NVIDIA L4, 23034\n1, GPU-bbbb, NVIDIA L4, 23034\n";

    #[test]
    fn nvidia_smi_output_is_parsed_not_assumed() {
        let gpus = parse_query(ONE_H100).unwrap();
        assert_eq!(
            gpus,
            [Gpu {
                index: 0,
                uuid: "GPU-7565b928-733a-7475-e1cc-26b2cb967075".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_mib: 81559
            }]
        );
        assert_eq!(parse_query(TWO_L4).unwrap().len(), 2);
        assert_eq!(parse_query("").unwrap(), []);
        assert!(parse_query("No devices were found").is_err());
        assert!(is_kind(&gpus[0], "NVIDIA_H100_80GB"));
        assert!(!is_kind(&gpus[0], "NVIDIA_L4"));
        assert!(is_kind(&parse_query(TWO_L4).unwrap()[0], "NVIDIA_L4"));
    }

    #[test]
    fn gpus_are_counted_and_handed_out_whole() {
        let mut pool = GpuPool::new(parse_query(TWO_L4));
        assert_eq!(pool.shortage(2, 0, Some("NVIDIA_L4")), None);
        assert_eq!(
            pool.shortage(2, 1, Some("NVIDIA_L4")).unwrap(),
            "the deployment needs 2 GPU(s) (NVIDIA_L4); 1 of this machine's 2 GPU(s) are free"
        );
        let a = pool.take("a", 1).unwrap();
        let b = pool.take("b", 1).unwrap();
        assert_ne!(a[0].index, b[0].index);
        assert_eq!(pool.take("c", 1).unwrap_err(), "waiting for 1 GPU(s): 0 of 2 are free");
        pool.release("a");
        assert_eq!(pool.take("c", 1).unwrap()[0].index, a[0].index);
        let none = GpuPool::new(Err("nvidia-smi is not installed (no NVIDIA driver)".into()));
        let why = none.shortage(1, 0, Some("NVIDIA_L4")).unwrap();
        assert!(why.contains("has none") && why.contains("nvidia-smi is not installed"), "{why}");
    }
}
