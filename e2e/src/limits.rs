//! The memory and CPU a platform lets each of a function's containers use, read from the
//! Kubernetes quantities that a Knative Service's container and an OpenFaaS deployment carry.

use serde_json::Value;

const MIB: u128 = 1 << 20;

/// What one container of a function may use; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionLimits {
    pub memory_mib: Option<u64>,
    /// Thousandths of a CPU, as Kubernetes' `1000m`.
    pub cpu_millis: Option<u64>,
}

impl FunctionLimits {
    /// From a `limits` object of Kubernetes quantities (`{"cpu": "1000m", "memory": "1769Mi"}`),
    /// as a container's `resources.limits` and an OpenFaaS deployment's `limits` hold them.
    /// Other resources (ephemeral storage) are not the container runtime's to enforce here, and
    /// a resource that is absent has no limit.
    pub fn from_kubernetes(limits: &Value) -> Result<Self, String> {
        let quantity = |resource: &str| -> Result<Option<Quantity>, String> {
            match &limits[resource] {
                Value::Null => Ok(None),
                Value::String(text) => Quantity::parse(text).map(Some),
                Value::Number(number) => Quantity::parse(&number.to_string()).map(Some),
                other => Err(format!("limits.{resource} is not a quantity: {other}")),
            }
        };
        Ok(Self {
            memory_mib: quantity("memory")?.map(|q| q.ceil_in(MIB, 1)).transpose()?,
            cpu_millis: quantity("cpu")?.map(|q| q.ceil_in(1, 1000)).transpose()?,
        })
    }

    /// From what `podman inspect` reports of a container (`HostConfig.Memory` in bytes and
    /// `HostConfig.NanoCpus`), where 0 is no limit.
    pub fn from_podman(memory_bytes: u64, nano_cpus: u64) -> Self {
        Self {
            memory_mib: (memory_bytes > 0).then(|| memory_bytes.div_ceil(1 << 20)),
            cpu_millis: (nano_cpus > 0).then(|| nano_cpus.div_ceil(1_000_000)),
        }
    }

    /// The `podman run` flags that enforce these limits. Swap is capped at the memory limit, as a
    /// Kubernetes node (which runs without swap for its pods) gives a container no more than it.
    pub fn podman_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(mib) = self.memory_mib {
            args.extend([
                "--memory".to_string(),
                format!("{mib}m"),
                "--memory-swap".to_string(),
                format!("{mib}m"),
            ]);
        }
        if let Some(millis) = self.cpu_millis {
            args.extend([
                "--cpus".to_string(),
                format!("{}.{:03}", millis / 1000, millis % 1000),
            ]);
        }
        args
    }
}

/// A non-negative Kubernetes quantity as the exact fraction `numerator / denominator` of its
/// base unit (bytes, or whole CPUs): `289m` must give 289 millicores, which floating point
/// rounding up would make 290.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quantity {
    numerator: u128,
    denominator: u128,
}

impl Quantity {
    /// `1769Mi`, `1Gi`, `500M`, `1000m`, `2`, `0.5`, `1e3`: a decimal number and an optional
    /// binary (`Ki` .. `Ei`) or decimal (`m`, `k` .. `E`) suffix or decimal exponent.
    fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("`{text}` is not a Kubernetes quantity");
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid());
        }
        let digits = format!("{whole}{fraction}");
        let mut numerator: u128 = digits.parse().map_err(|_| invalid())?;
        let mut denominator = pow(10, fraction.len() as u32).ok_or_else(invalid)?;
        let (multiplier, divisor) = match suffix {
            "" => (Some(1), 1),
            "m" => (Some(1), 1000),
            "k" => (pow(10, 3), 1),
            "M" => (pow(10, 6), 1),
            "G" => (pow(10, 9), 1),
            "T" => (pow(10, 12), 1),
            "P" => (pow(10, 15), 1),
            "E" => (pow(10, 18), 1),
            "Ki" => (pow(2, 10), 1),
            "Mi" => (pow(2, 20), 1),
            "Gi" => (pow(2, 30), 1),
            "Ti" => (pow(2, 40), 1),
            "Pi" => (pow(2, 50), 1),
            "Ei" => (pow(2, 60), 1),
            _ => {
                let exponent = suffix
                    .strip_prefix(['e', 'E'])
                    .and_then(|e| e.parse::<i32>().ok())
                    .ok_or_else(invalid)?;
                let scale = pow(10, exponent.unsigned_abs()).ok_or_else(invalid)?;
                if exponent >= 0 {
                    (Some(scale), 1)
                } else {
                    (Some(1), scale)
                }
            }
        };
        numerator = numerator
            .checked_mul(multiplier.ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        denominator = denominator.checked_mul(divisor).ok_or_else(invalid)?;
        Ok(Self {
            numerator,
            denominator,
        })
    }

    /// How many units of `unit_numerator / unit_denominator` base units it takes, rounded up:
    /// a container never gets less than it asked for.
    fn ceil_in(self, unit_numerator: u128, unit_denominator: u128) -> Result<u64, String> {
        let too_large = || "a quantity too large for a container's limits".to_string();
        let numerator = self
            .numerator
            .checked_mul(unit_denominator)
            .ok_or_else(too_large)?;
        let denominator = self
            .denominator
            .checked_mul(unit_numerator)
            .ok_or_else(too_large)?;
        u64::try_from(numerator.div_ceil(denominator)).map_err(|_| too_large())
    }
}

fn pow(base: u128, exponent: u32) -> Option<u128> {
    base.checked_pow(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(memory: &str, cpu: &str) -> FunctionLimits {
        FunctionLimits::from_kubernetes(&json!({ "memory": memory, "cpu": cpu })).expect("limits")
    }

    #[test]
    fn the_quantities_siren_writes_and_their_other_spellings() {
        let expected = |memory_mib, cpu_millis| FunctionLimits {
            memory_mib: Some(memory_mib),
            cpu_millis: Some(cpu_millis),
        };
        assert_eq!(limits("1769Mi", "1000m"), expected(1769, 1000));
        assert_eq!(limits("10240Mi", "289m"), expected(10_240, 289));
        assert_eq!(limits("1Gi", "2"), expected(1024, 2000));
        assert_eq!(limits("0.5Gi", "0.25"), expected(512, 250));
        assert_eq!(limits("1073741824", "1e0"), expected(1024, 1000));
        // 1 GB is not a whole number of MiB: rounded up, never below what was asked.
        assert_eq!(limits("1G", "1500m"), expected(954, 1500));
    }

    #[test]
    fn absent_resources_have_no_limit_and_others_are_ignored() {
        let only_memory = FunctionLimits::from_kubernetes(
            &json!({ "memory": "512Mi", "ephemeral-storage": "1Gi" }),
        )
        .expect("limits");
        assert_eq!(
            only_memory,
            FunctionLimits {
                memory_mib: Some(512),
                cpu_millis: None
            }
        );
        assert_eq!(
            FunctionLimits::from_kubernetes(&Value::Null).expect("limits"),
            FunctionLimits::default()
        );
    }

    #[test]
    fn what_is_not_a_quantity_is_refused() {
        for bad in ["", "Mi", "1.2.3Mi", "12Xi", "-1Gi", "1e"] {
            assert!(
                FunctionLimits::from_kubernetes(&json!({ "memory": bad })).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn podman_gets_mib_and_decimal_cpus_and_reports_bytes_and_nanocpus() {
        let limits = limits("1769Mi", "289m");
        assert_eq!(
            limits.podman_args(),
            [
                "--memory",
                "1769m",
                "--memory-swap",
                "1769m",
                "--cpus",
                "0.289"
            ]
        );
        assert_eq!(FunctionLimits::from_podman(1769 << 20, 289_000_000), limits);
        assert_eq!(FunctionLimits::from_podman(0, 0), FunctionLimits::default());
    }
}
