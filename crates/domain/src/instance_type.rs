//! Instance types: Azure VM SKU names and Sluice's own `cpu=…,memory=…,gpu=…` form, mapped
//! to the resources one replica asks for.

use crate::RuleError;

/// What one replica asks the backend for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpus: u32,
}

/// A validated instance type: the name the user wrote plus its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceType {
    pub name: String,
    pub resources: Resources,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Azure SKUs used for online endpoints: (name, cores, memory in MiB, GPUs).
const SKUS: &[(&str, u32, u64, u32)] = &[
    ("Standard_DS1_v2", 1, 3584, 0),
    ("Standard_DS2_v2", 2, 7168, 0),
    ("Standard_DS3_v2", 4, 14336, 0),
    ("Standard_DS4_v2", 8, 28672, 0),
    ("Standard_DS5_v2", 16, 57344, 0),
    ("Standard_F2s_v2", 2, 4096, 0),
    ("Standard_F4s_v2", 4, 8192, 0),
    ("Standard_F8s_v2", 8, 16384, 0),
    ("Standard_F16s_v2", 16, 32768, 0),
    ("Standard_E2s_v3", 2, 16384, 0),
    ("Standard_E4s_v3", 4, 32768, 0),
    ("Standard_E8s_v3", 8, 65536, 0),
    ("Standard_D2as_v4", 2, 8192, 0),
    ("Standard_D4as_v4", 4, 16384, 0),
    ("Standard_NC4as_T4_v3", 4, 28672, 1),
    ("Standard_NC6s_v3", 6, 114688, 1),
    ("Standard_NC8as_T4_v3", 8, 57344, 1),
    ("Standard_NC12s_v3", 12, 229376, 2),
    ("Standard_NC24ads_A100_v4", 24, 225280, 1),
];

impl InstanceType {
    /// The default when a deployment names none: one core, 2 GiB.
    pub fn default_local() -> Self {
        Self::parse("cpu=1,memory=2Gi").expect("the default instance type is valid")
    }

    pub fn parse(s: &str) -> Result<Self, RuleError> {
        if let Some(&(name, cores, mib, gpus)) = SKUS.iter().find(|(n, ..)| n.eq_ignore_ascii_case(s)) {
            return Ok(Self {
                name: name.to_owned(),
                resources: Resources { cpu_millis: cores * 1000, memory_bytes: mib * MIB, gpus },
            });
        }
        if s.contains('=') {
            return Self::parse_custom(s);
        }
        Err(RuleError(format!(
            "unknown instance type {s:?}: expected an Azure SKU such as Standard_DS3_v2 \
             or Sluice's form 'cpu=2,memory=4Gi[,gpu=1]'"
        )))
    }

    fn parse_custom(s: &str) -> Result<Self, RuleError> {
        let mut res = Resources { cpu_millis: 0, memory_bytes: 0, gpus: 0 };
        for part in s.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k.trim() {
                "cpu" => res.cpu_millis = parse_cpu(v.trim())?,
                "memory" => res.memory_bytes = parse_memory(v.trim())?,
                "gpu" => {
                    res.gpus = v
                        .trim()
                        .parse()
                        .map_err(|_| RuleError(format!("instance type gpu={v:?}: expected a whole number")))?
                }
                other => {
                    return Err(RuleError(format!("instance type key {other:?}: expected cpu, memory or gpu")));
                }
            }
        }
        if res.cpu_millis == 0 || res.memory_bytes == 0 {
            return Err(RuleError(format!(
                "instance type {s:?}: cpu and memory are both required, e.g. 'cpu=2,memory=4Gi'"
            )));
        }
        Ok(Self { name: s.to_owned(), resources: res })
    }
}

/// `2`, `0.5` or `500m` → millicores.
fn parse_cpu(v: &str) -> Result<u32, RuleError> {
    let err = || RuleError(format!("instance type cpu={v:?}: expected cores like 2, 0.5 or 500m"));
    let millis = if let Some(m) = v.strip_suffix('m') {
        m.parse::<u32>().map_err(|_| err())?
    } else {
        let cores: f64 = v.parse().map_err(|_| err())?;
        if !cores.is_finite() || cores <= 0.0 || cores > 1024.0 {
            return Err(err());
        }
        (cores * 1000.0).round() as u32
    };
    if millis == 0 { Err(err()) } else { Ok(millis) }
}

/// `4Gi`, `512Mi`, `1G`, `1000M` or bytes → bytes.
fn parse_memory(v: &str) -> Result<u64, RuleError> {
    let err = || RuleError(format!("instance type memory={v:?}: expected a size like 4Gi or 512Mi"));
    let (num, unit) = v.find(|c: char| c.is_ascii_alphabetic()).map_or((v, ""), |i| v.split_at(i));
    let n: f64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => MIB,
        "Gi" => GIB,
        "Ti" => GIB << 10,
        "K" | "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(err()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > (1u64 << 50) as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_skus_map_to_resources() {
        let t = InstanceType::parse("standard_ds3_v2").unwrap();
        assert_eq!(t.name, "Standard_DS3_v2");
        assert_eq!(t.resources, Resources { cpu_millis: 4000, memory_bytes: 14 * GIB, gpus: 0 });
        assert_eq!(InstanceType::parse("Standard_NC6s_v3").unwrap().resources.gpus, 1);
    }

    #[test]
    fn sluice_form_parses_units() {
        let t = InstanceType::parse("cpu=500m,memory=512Mi,gpu=1").unwrap();
        assert_eq!(t.resources, Resources { cpu_millis: 500, memory_bytes: 512 * MIB, gpus: 1 });
        assert_eq!(InstanceType::parse("cpu=2,memory=4Gi").unwrap().resources.cpu_millis, 2000);
    }

    #[test]
    fn bad_instance_types_say_what_is_expected() {
        for bad in [
            "Standard_XYZ",
            "cpu=0,memory=1Gi",
            "cpu=2",
            "cpu=x,memory=1Gi",
            "cpu=1,memory=4Qi",
            "cpu=1,memory=1Gi,tpu=1",
        ] {
            let e = InstanceType::parse(bad).unwrap_err();
            assert!(e.0.contains("expected") || e.0.contains("required"), "{bad}: {e}");
        }
    }
}
