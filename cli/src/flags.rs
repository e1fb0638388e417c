//! gcloud-style flag values: comma lists (`a,b`), key=value lists (`K=V,K2=V2`), the
//! `^DELIM^` escape for values that contain commas, accelerators, autoscaling metrics and
//! traffic splits. Pure: each parser takes the flag's text and returns API types or a message
//! that names the flag and says what is expected.

use std::collections::BTreeMap;

/// A flag value that does not parse, with the flag's name and what it should look like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}: {message}")]
pub struct FlagError {
    pub flag: &'static str,
    pub message: String,
}

fn err(flag: &'static str, message: impl Into<String>) -> FlagError {
    FlagError { flag, message: message.into() }
}

/// Splits a gcloud list: `a,b,c`, or with a custom delimiter `^:^a,1:b,2` (gcloud's escape for
/// items that contain commas). An empty value is an empty list.
pub fn split_list(value: &str) -> Vec<String> {
    let (delimiter, body) = match value.strip_prefix('^').and_then(|rest| rest.split_once('^')) {
        Some((d, body)) if !d.is_empty() => (d, body),
        _ => (",", value),
    };
    if body.is_empty() {
        return Vec::new();
    }
    body.split(delimiter).map(str::to_string).collect()
}

/// `K=V,K2=V2` in order; keys must be non-empty and unique, values may be empty.
pub fn key_values(flag: &'static str, value: &str) -> Result<Vec<(String, String)>, FlagError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in split_list(value) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(err(flag, format!("`{item}` is not KEY=VALUE")));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(err(flag, format!("`{item}` has an empty key")));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(err(flag, format!("key `{k}` is given twice")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `--labels team=ml,env=prod`, checked against the API's label rules.
pub fn labels(value: &str) -> Result<BTreeMap<String, String>, FlagError> {
    let map: BTreeMap<String, String> = key_values("labels", value)?.into_iter().collect();
    api::check_labels(&map).map_err(|e| err("labels", e.0))?;
    Ok(map)
}

/// `--inference-timeout 120s`: a duration between 1s and 3600s.
pub fn inference_timeout(value: &str) -> Result<api::Duration, FlagError> {
    let timeout: api::Duration =
        value.parse().map_err(|e: api::DurationError| err("inference-timeout", e.to_string()))?;
    api::check_inference_timeout(timeout).map_err(|e| err("inference-timeout", e))?;
    Ok(timeout)
}

/// `--container-env-vars A=1,B=2`.
pub fn env_vars(value: &str) -> Result<Vec<api::EnvVar>, FlagError> {
    Ok(key_values("container-env-vars", value)?
        .into_iter()
        .map(|(name, value)| api::EnvVar { name, value })
        .collect())
}

/// `--container-ports 8080` (gcloud takes a list; the first port is the one served).
pub fn ports(value: &str) -> Result<Vec<api::Port>, FlagError> {
    split_list(value)
        .iter()
        .map(|p| match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(api::Port { container_port: i32::from(port) }),
            _ => Err(err("container-ports", format!("`{p}` is not a port number (1 to 65535)"))),
        })
        .collect()
}

/// `--accelerator type=nvidia-l4,count=1`: the type in gcloud's kebab case (or the API's enum
/// name) and a count that defaults to 1.
pub fn accelerator(value: &str) -> Result<(String, i32), FlagError> {
    let mut kind = None;
    let mut count = 1;
    for (k, v) in key_values("accelerator", value)? {
        match k.as_str() {
            "type" => kind = Some(accelerator_type(&v)?),
            "count" => {
                count = match v.trim().parse::<i32>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(err("accelerator", format!("count `{v}` is not a positive integer"))),
                }
            }
            other => {
                return Err(err("accelerator", format!("unknown key `{other}`: use type=TYPE[,count=N]")));
            }
        }
    }
    let kind = kind.ok_or_else(|| err("accelerator", "type is required: type=nvidia-l4[,count=1]"))?;
    Ok((kind, count))
}

/// `nvidia-l4` or `NVIDIA_L4` to the API's enum name `NVIDIA_L4`.
pub fn accelerator_type(value: &str) -> Result<String, FlagError> {
    let v = value.trim();
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(err(
            "accelerator",
            format!("type `{value}` is not an accelerator type such as nvidia-l4"),
        ));
    }
    Ok(v.replace('-', "_").to_ascii_uppercase())
}

/// gcloud's keys for autoscaling metrics and the API's metric names.
pub const METRIC_KEYS: [(&str, &str); 4] = [
    ("cpu-usage", api::METRIC_CPU),
    ("gpu-duty-cycle", api::METRIC_GPU),
    ("request-counts-per-minute", api::METRIC_REQUESTS),
    ("concurrency", api::METRIC_CONCURRENCY),
];

/// `--autoscaling-metric-specs cpu-usage=60,request-counts-per-minute=600`.
pub fn autoscaling_metric_specs(value: &str) -> Result<Vec<api::AutoscalingMetricSpec>, FlagError> {
    const FLAG: &str = "autoscaling-metric-specs";
    key_values(FLAG, value)?
        .into_iter()
        .map(|(k, v)| {
            let Some((_, metric)) = METRIC_KEYS.iter().find(|(key, _)| *key == k) else {
                let known: Vec<&str> = METRIC_KEYS.iter().map(|(key, _)| *key).collect();
                return Err(err(FLAG, format!("unknown metric `{k}`: use one of {}", known.join(", "))));
            };
            let target = match v.trim().parse::<i32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(err(FLAG, format!("target `{v}` of `{k}` is not a positive integer"))),
            };
            Ok(api::AutoscalingMetricSpec { metric_name: metric.to_string(), target })
        })
        .collect()
}

/// `--traffic-split 0=100` or `DMID=50,DMID2=50`: deployed model ids (`0` is the model being
/// deployed) to percentages from 0 to 100 that add up to 100.
pub fn traffic_split(value: &str) -> Result<BTreeMap<String, i32>, FlagError> {
    const FLAG: &str = "traffic-split";
    let pairs = key_values(FLAG, value)?;
    if pairs.is_empty() {
        return Err(err(FLAG, "give DEPLOYED_MODEL_ID=PERCENT pairs, such as 0=100"));
    }
    let mut split = BTreeMap::new();
    for (id, percent) in pairs {
        if id != "0" {
            api::check_deployed_model_id(&id).map_err(|e| err(FLAG, e.0))?;
        }
        let percent = match percent.trim().parse::<i32>() {
            Ok(p) if (0..=100).contains(&p) => p,
            _ => return Err(err(FLAG, format!("`{percent}` for `{id}` is not a percentage from 0 to 100"))),
        };
        split.insert(id, percent);
    }
    let total: i32 = split.values().sum();
    if total != 100 {
        return Err(err(FLAG, format!("the percentages add up to {total}, not 100")));
    }
    Ok(split)
}

/// `--add-aliases golden --remove-aliases staging` as `mergeVersionAliases` wants them:
/// `["golden", "-staging"]`.
pub fn merge_aliases(add: &[String], remove: &[String]) -> Result<Vec<String>, FlagError> {
    let mut out = Vec::new();
    for alias in add {
        api::check_alias(alias).map_err(|e| err("add-aliases", e.0))?;
        out.push(alias.clone());
    }
    for alias in remove {
        api::check_alias(alias).map_err(|e| err("remove-aliases", e.0))?;
        if add.contains(alias) {
            return Err(err("remove-aliases", format!("`{alias}` is both added and removed")));
        }
        out.push(format!("-{alias}"));
    }
    if out.is_empty() {
        return Err(err("add-aliases", "give --add-aliases or --remove-aliases"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_commas_or_on_the_delimiter_gcloud_escapes_with() {
        assert_eq!(split_list("a,b,c"), ["a", "b", "c"]);
        assert_eq!(split_list("^:^--flag=a,b:x"), ["--flag=a,b", "x"]);
        assert_eq!(split_list(""), Vec::<String>::new());
        assert_eq!(split_list("^^a,b"), ["^^a", "b"], "an empty delimiter is no escape");
    }

    #[test]
    fn env_vars_keep_their_order_and_may_have_empty_values() {
        let vars = env_vars("A=1,B=x=y,C=").unwrap();
        let pairs: Vec<(&str, &str)> = vars.iter().map(|v| (v.name.as_str(), v.value.as_str())).collect();
        assert_eq!(pairs, [("A", "1"), ("B", "x=y"), ("C", "")]);
        assert_eq!(env_vars("A").unwrap_err().to_string(), "--container-env-vars: `A` is not KEY=VALUE");
        assert!(env_vars("A=1,A=2").unwrap_err().to_string().contains("given twice"));
        assert!(env_vars("=1").is_err());
    }

    #[test]
    fn labels_follow_the_api_rules() {
        let l = labels("team=ml,env=prod").unwrap();
        assert_eq!(l["team"], "ml");
        assert_eq!(l["env"], "prod");
        assert!(labels("Team=ml").unwrap_err().to_string().starts_with("--labels: label key `Team`"));
    }

    #[test]
    fn accelerators_take_gcloud_spelling_and_default_to_one() {
        assert_eq!(accelerator("type=nvidia-l4,count=2").unwrap(), ("NVIDIA_L4".into(), 2));
        assert_eq!(accelerator("type=NVIDIA_TESLA_T4").unwrap(), ("NVIDIA_TESLA_T4".into(), 1));
        assert!(accelerator("count=1").unwrap_err().to_string().contains("type is required"));
        assert!(accelerator("type=nvidia-l4,count=0").is_err());
        assert!(accelerator("type=nvidia-l4,size=2").unwrap_err().to_string().contains("unknown key `size`"));
        assert!(accelerator("type=nvidia l4").is_err());
    }

    #[test]
    fn autoscaling_keys_map_to_metric_names() {
        let specs = autoscaling_metric_specs("cpu-usage=60,request-counts-per-minute=600").unwrap();
        assert_eq!(
            specs,
            [
                api::AutoscalingMetricSpec { metric_name: api::METRIC_CPU.into(), target: 60 },
                api::AutoscalingMetricSpec { metric_name: api::METRIC_REQUESTS.into(), target: 600 },
            ]
        );
        assert_eq!(autoscaling_metric_specs("gpu-duty-cycle=70").unwrap()[0].metric_name, api::METRIC_GPU);
        let unknown = autoscaling_metric_specs("memory=50").unwrap_err().to_string();
        assert!(unknown.contains("unknown metric `memory`") && unknown.contains("cpu-usage"), "{unknown}");
        assert!(autoscaling_metric_specs("cpu-usage=high").is_err());
    }

    #[test]
    fn traffic_splits_name_deployed_models_and_add_up_to_100() {
        assert_eq!(traffic_split("0=100").unwrap(), BTreeMap::from([("0".to_string(), 100)]));
        let split = traffic_split("123=50,456=50").unwrap();
        assert_eq!(split["123"], 50);
        assert_eq!(split["456"], 50);
        assert_eq!(
            traffic_split("123=50,456=40").unwrap_err().to_string(),
            "--traffic-split: the percentages add up to 90, not 100"
        );
        assert!(traffic_split("0=101").is_err());
        assert!(traffic_split("abc=100").unwrap_err().to_string().contains("deployed model id `abc`"));
        assert!(traffic_split("").is_err());
    }

    #[test]
    fn ports_are_port_numbers() {
        assert_eq!(ports("8080").unwrap(), [api::Port { container_port: 8080 }]);
        assert!(ports("0").is_err());
        assert!(ports("http").is_err());
        assert!(ports("70000").is_err());
    }

    #[test]
    fn aliases_to_merge_are_added_or_removed() {
        let add = vec!["golden".to_string()];
        let remove = vec!["staging".to_string()];
        assert_eq!(merge_aliases(&add, &remove).unwrap(), ["golden", "-staging"]);
        assert!(merge_aliases(&[], &[]).is_err());
        assert!(merge_aliases(&["2x".into()], &[]).is_err());
        assert!(merge_aliases(&add, &add).unwrap_err().to_string().contains("both added and removed"));
    }
}
