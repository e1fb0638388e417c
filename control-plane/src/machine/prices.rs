//! Estimated prices of machine types, for the console's machine list: a price per vCPU hour,
//! per GiB of memory hour and per accelerator hour, with a fixed price per machine type where
//! one is known. The defaults are close to Vertex AI's online prediction list prices in
//! us-central1 (USD); an operator sets their own (their hardware's cost, a cloud's prices)
//! with `--machine-prices FILE`:
//!
//! ```yaml
//! currency: EUR
//! vcpuHour: 0.03
//! gibHour: 0.004
//! acceleratorHour: {NVIDIA_L4: 0.65}
//! machineTypeHour: {e2-small: 0.02}   # replaces the estimate of that type
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{MachineError, MachineType};

/// Prices of compute per hour.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriceTable {
    /// The currency the prices are in, shown next to them.
    #[serde(default = "usd")]
    pub currency: String,
    /// Per vCPU and hour.
    pub vcpu_hour: f64,
    /// Per GiB of memory and hour.
    pub gib_hour: f64,
    /// Per accelerator and hour, by accelerator type.
    #[serde(default)]
    pub accelerator_hour: BTreeMap<String, f64>,
    /// A machine type's whole price per hour, replacing the estimate from its parts.
    #[serde(default)]
    pub machine_type_hour: BTreeMap<String, f64>,
}

fn usd() -> String {
    "USD".to_string()
}

impl Default for PriceTable {
    fn default() -> Self {
        let accelerators = [
            ("NVIDIA_TESLA_T4", 0.4025),
            ("NVIDIA_TESLA_P4", 0.69),
            ("NVIDIA_TESLA_P100", 1.679),
            ("NVIDIA_TESLA_V100", 2.852),
            ("NVIDIA_L4", 0.644),
            ("NVIDIA_TESLA_A100", 3.37),
        ];
        PriceTable {
            currency: usd(),
            vcpu_hour: 0.0345,
            gib_hour: 0.0046,
            accelerator_hour: accelerators.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            machine_type_hour: BTreeMap::new(),
        }
    }
}

impl PriceTable {
    /// A price table from YAML (see the module docs); every price must be 0 or more.
    pub fn from_yaml(text: &str) -> Result<PriceTable, MachineError> {
        let table: PriceTable =
            serde_norway::from_str(text).map_err(|e| MachineError::Invalid(format!("prices: {e}")))?;
        let all = [table.vcpu_hour, table.gib_hour]
            .into_iter()
            .chain(table.accelerator_hour.values().copied())
            .chain(table.machine_type_hour.values().copied());
        for price in all {
            if !price.is_finite() || price < 0.0 {
                return Err(MachineError::Invalid(format!("prices: {price} is not a price (0 or more)")));
            }
        }
        Ok(table)
    }

    /// The estimated price of one replica of `machine` per hour; `None` when it has an
    /// accelerator the table has no price for.
    pub fn per_hour(&self, machine: &MachineType) -> Option<f64> {
        if let Some(price) = self.machine_type_hour.get(&machine.name) {
            return Some(*price);
        }
        let vcpu = machine.cpu_millis as f64 / 1000.0;
        let gib = machine.memory_bytes as f64 / f64::from(1u32 << 30);
        let mut price = vcpu * self.vcpu_hour + gib * self.gib_hour;
        if let Some(acc) = &machine.accelerator {
            price += self.accelerator_hour.get(&acc.accelerator_type)? * f64::from(acc.count);
        }
        Some(price)
    }

    /// A price for people: `0.11 USD/h`, or `no estimate`.
    pub fn describe(&self, machine: &MachineType) -> String {
        match self.per_hour(machine) {
            Some(p) if p < 0.01 => format!("{p:.4} {}/h", self.currency),
            Some(p) => format!("{p:.2} {}/h", self.currency),
            None => "no estimate".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Catalog;

    #[test]
    fn the_defaults_estimate_from_cpu_memory_and_accelerators() {
        let prices = PriceTable::default();
        let catalog = Catalog::builtin();
        let n1 = prices.per_hour(catalog.get("n1-standard-2").unwrap()).unwrap();
        assert!((n1 - (2.0 * 0.0345 + 7.5 * 0.0046)).abs() < 1e-9, "{n1}");
        let g2 = prices.per_hour(catalog.get("g2-standard-4").unwrap()).unwrap();
        assert!((g2 - (4.0 * 0.0345 + 16.0 * 0.0046 + 0.644)).abs() < 1e-9, "{g2}");
        assert_eq!(prices.describe(catalog.get("n1-standard-2").unwrap()), "0.10 USD/h");
        let t4 = catalog.resolve("n1-standard-4", Some("NVIDIA_TESLA_T4"), 2).unwrap();
        assert!(prices.per_hour(&t4).unwrap() > 0.8);
    }

    #[test]
    fn a_configured_table_overrides_and_unknown_accelerators_have_no_estimate() {
        let prices = PriceTable::from_yaml(
            "currency: EUR\nvcpuHour: 0.01\ngibHour: 0\nmachineTypeHour: {e2-small: 0.5}\n",
        )
        .unwrap();
        let catalog = Catalog::builtin();
        assert_eq!(prices.describe(catalog.get("e2-small").unwrap()), "0.50 EUR/h");
        assert_eq!(prices.per_hour(catalog.get("e2-standard-2").unwrap()), Some(0.02));
        assert_eq!(prices.describe(catalog.get("g2-standard-4").unwrap()), "no estimate");
        for bad in ["vcpuHour: -1\ngibHour: 0", "vcpuHour: 1", "vcpuHour: 1\ngibHour: 1\nwat: 2"] {
            assert!(PriceTable::from_yaml(bad).is_err(), "{bad}");
        }
    }
}
