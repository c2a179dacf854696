//! A container's environment as upstream builds it: service links, `envFrom`, then `env` with
//! `valueFrom` (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef) and `$(VAR)`
//! references expanded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret, Service};
use kube::Api;
use kube::api::ListParams;

use crate::sysinfo::HostInfo;

/// Why a container's configuration could not be built (CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A referenced ConfigMap, Secret or key is missing and not optional.
    #[error("{0}")]
    Missing(String),
    /// A field reference the kubelet does not know.
    #[error("unsupported field reference {0:?}")]
    Unsupported(String),
    /// The API could not be read.
    #[error("reading {what}: {error}")]
    Api {
        /// What was being read.
        what: String,
        /// The error.
        error: kube::Error,
    },
}

/// Reads ConfigMaps and Secrets of one namespace, each at most once per container start.
pub struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Sources {
    /// Sources for the pod's namespace.
    pub fn new(client: kube::Client, namespace: &str) -> Sources {
        Sources {
            client,
            namespace: namespace.into(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// A ConfigMap's data (binaryData included as text where it is UTF-8), or `None` if absent.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api.get_opt(name).await.map_err(|error| ConfigError::Api {
                what: format!("configmap {name:?}"),
                error,
            })?;
            self.config_maps.insert(name.into(), found);
        }
        Ok(self.config_maps[name].as_ref().map(|cm| {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            data.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
            data
        }))
    }

    /// A Secret's data, or `None` if absent.
    pub async fn secret(&mut self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api.get_opt(name).await.map_err(|error| ConfigError::Api {
                what: format!("secret {name:?}"),
                error,
            })?;
            self.secrets.insert(name.into(), found);
        }
        Ok(self.secrets[name].as_ref().map(|s| {
            let mut data: BTreeMap<String, Vec<u8>> =
                s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            data.extend(
                s.string_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            );
            data
        }))
    }

    /// The Docker-link style variables of the namespace's services (and the master service),
    /// as upstream's `enableServiceLinks`.
    async fn service_links(&self, pod: &Pod) -> Result<Vec<(String, String)>, ConfigError> {
        let list = |ns: &str| {
            let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
            let ns = ns.to_string();
            async move {
                api.list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .map_err(|error| ConfigError::Api {
                        what: format!("services in {ns:?}"),
                        error,
                    })
            }
        };
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let mut services = if links {
            list(&self.namespace).await?
        } else {
            Vec::new()
        };
        if self.namespace != "default" || !links {
            services.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
            services.extend(
                list("default")
                    .await?
                    .into_iter()
                    .filter(|s| s.metadata.name.as_deref() == Some("kubernetes")),
            );
        }
        Ok(services.iter().flat_map(service_env).collect())
    }
}

/// The variables one service contributes.
fn service_env(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let ip = match spec.cluster_ip.as_deref() {
        Some(ip) if !ip.is_empty() && ip != "None" => ip,
        _ => return Vec::new(),
    };
    let name = service
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .to_uppercase()
        .replace('-', "_");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return Vec::new() };
    let mut vars = vec![
        (format!("{name}_SERVICE_HOST"), ip.to_string()),
        (format!("{name}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in ports {
        if let Some(port_name) = &p.name {
            let port_name = port_name.to_uppercase().replace('-', "_");
            vars.push((format!("{name}_SERVICE_PORT_{port_name}"), p.port.to_string()));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
    vars.push((
        format!("{name}_PORT"),
        format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
    ));
    for p in ports {
        let proto = proto(p);
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        vars.push((prefix.clone(), format!("{}://{ip}:{}", proto.to_lowercase(), p.port)));
        vars.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
        vars.push((format!("{prefix}_PORT"), p.port.to_string()));
        vars.push((format!("{prefix}_ADDR"), ip.to_string()));
    }
    vars
}

/// Builds the container's environment, later entries overriding earlier ones by name.
pub async fn build(
    pod: &Pod,
    container: &Container,
    host: &HostInfo,
    sources: &mut Sources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env: Vec<(String, String)> = sources.service_links(pod).await?;
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what) = if let Some(cm) = &from.config_map_ref {
            (
                sources.config_map(&cm.name).await?,
                cm.optional,
                format!("configmap {:?}", cm.name),
            )
        } else if let Some(s) = &from.secret_ref {
            (
                sources.secret(&s.name).await?,
                s.optional,
                format!("secret {:?}", s.name),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => env.extend(
                data.into_iter()
                    .map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned())),
            ),
            None if optional == Some(true) => {}
            None => return Err(ConfigError::Missing(format!("{what} not found"))),
        }
    }
    for var in container.env.iter().flatten() {
        let value = match value_of(var, pod, container, host, sources).await? {
            Some(v) => v,
            None => continue,
        };
        let value = expand(&value, &env);
        env.push((var.name.clone(), value));
    }
    Ok(dedup(env))
}

/// Keeps the last value of each name, in order of first appearance.
fn dedup(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

async fn value_of(
    var: &EnvVar,
    pod: &Pod,
    container: &Container,
    host: &HostInfo,
    sources: &mut Sources,
) -> Result<Option<String>, ConfigError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    if let Some(f) = &from.field_ref {
        return field(pod, &f.field_path).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
        return Ok(Some(resource(
            pod,
            r.container_name.as_deref(),
            container,
            &r.resource,
            divisor,
            host,
        )?));
    }
    let (data, key, optional, what) = if let Some(k) = &from.config_map_key_ref {
        (
            sources.config_map(&k.name).await?,
            &k.key,
            k.optional,
            format!("configmap {:?}", k.name),
        )
    } else if let Some(k) = &from.secret_key_ref {
        (
            sources.secret(&k.name).await?,
            &k.key,
            k.optional,
            format!("secret {:?}", k.name),
        )
    } else {
        return Ok(None);
    };
    match data.as_ref().map(|d| d.get(key)) {
        Some(Some(v)) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        _ if optional == Some(true) => Ok(None),
        Some(None) => Err(ConfigError::Missing(format!("couldn't find key {key} in {what}"))),
        None => Err(ConfigError::Missing(format!("{what} not found"))),
    }
}

/// The value of a downward API field path.
pub fn field(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let map_entry = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.trim_start_matches("['").trim_end_matches("']");
        map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    let join = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => join(&meta.labels),
        "metadata.annotations" => join(&meta.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => ips(status
            .and_then(|s| s.host_ips.as_ref())
            .map(|v| v.iter().map(|i| i.ip.clone()))),
        "status.podIPs" => ips(status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|v| v.iter().map(|i| i.ip.clone()))),
        p if p.starts_with("metadata.labels[") => map_entry(&meta.labels, &p["metadata.labels".len()..]),
        p if p.starts_with("metadata.annotations[") => map_entry(&meta.annotations, &p["metadata.annotations".len()..]),
        other => return Err(ConfigError::Unsupported(other.into())),
    })
}

fn ips(list: Option<impl Iterator<Item = String>>) -> String {
    list.map(|i| i.collect::<Vec<_>>().join(",")).unwrap_or_default()
}

/// The value of a resourceFieldRef: the container's limit (the node's allocatable when unset)
/// or request, divided by the divisor and rounded up.
pub fn resource(
    pod: &Pod,
    container_name: Option<&str>,
    default: &Container,
    resource: &str,
    divisor: Option<&str>,
    host: &HostInfo,
) -> Result<String, ConfigError> {
    let container = match container_name {
        Some(name) if !name.is_empty() => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
            .ok_or_else(|| ConfigError::Missing(format!("container {name:?} not found")))?,
        _ => default,
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError::Unsupported(resource.into()))?;
    let res = container.resources.as_ref();
    let list = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(ConfigError::Unsupported(resource.into())),
    };
    let is_cpu = name == "cpu";
    let scale = if is_cpu { 1000 } else { 1 };
    let amount = match list.and_then(|l| l.get(name)) {
        Some(q) => kate_quantity::parse_scaled(&q.0, scale).unwrap_or(0),
        None if kind == "limits" => host
            .allocatable()
            .get(name)
            .and_then(|q| kate_quantity::parse_scaled(&q.0, scale))
            .unwrap_or(0),
        None => 0,
    };
    let divisor = divisor
        .and_then(|d| kate_quantity::parse_scaled(d, scale))
        .filter(|d| *d > 0)
        .unwrap_or(if is_cpu { 1000 } else { 1 });
    Ok(((amount + divisor - 1) / divisor).to_string())
}

/// Expands `$(NAME)` references to variables defined so far; `$$` escapes a dollar, unknown
/// references stay as written, as upstream does.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}, "requests": {"cpu": "100m"}}}]},
            "status": {"podIP": "10.42.0.5", "hostIP": "192.168.1.2"}
        }))
        .unwrap()
    }

    #[test]
    fn expands_references() {
        let env = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "two".to_string())];
        assert_eq!(expand("$(A)-$(B)", &env), "1-two");
        assert_eq!(expand("$(C) $$(A) $x", &env), "$(C) $(A) $x");
        assert_eq!(expand("tail$", &env), "tail$");
        assert_eq!(expand("$(unclosed", &env), "$(unclosed");
    }

    #[test]
    fn downward_fields() {
        let p = pod();
        assert_eq!(field(&p, "metadata.name").unwrap(), "web");
        assert_eq!(field(&p, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field(&p, "status.podIP").unwrap(), "10.42.0.5");
        assert_eq!(field(&p, "spec.nodeName").unwrap(), "n1");
        assert!(field(&p, "spec.nope").is_err());
    }

    #[test]
    fn resource_fields_round_up() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let host = HostInfo::read(std::path::Path::new("/"));
        assert_eq!(resource(&p, None, c, "limits.memory", None, &host).unwrap(), "67108864");
        assert_eq!(
            resource(&p, None, c, "limits.memory", Some("1Mi"), &host).unwrap(),
            "64"
        );
        assert_eq!(resource(&p, None, c, "limits.cpu", None, &host).unwrap(), "1");
        assert_eq!(resource(&p, None, c, "requests.cpu", Some("1m"), &host).unwrap(), "100");
        assert_eq!(resource(&p, None, c, "requests.memory", None, &host).unwrap(), "0");
    }

    #[test]
    fn service_links_name_every_port() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"name": "sql", "port": 5432}]}
        }))
        .unwrap();
        let vars: BTreeMap<String, String> = service_env(&svc).into_iter().collect();
        assert_eq!(vars["MY_DB_SERVICE_HOST"], "10.43.0.9");
        assert_eq!(vars["MY_DB_SERVICE_PORT_SQL"], "5432");
        assert_eq!(vars["MY_DB_PORT"], "tcp://10.43.0.9:5432");
        assert_eq!(vars["MY_DB_PORT_5432_TCP_ADDR"], "10.43.0.9");
    }
}
