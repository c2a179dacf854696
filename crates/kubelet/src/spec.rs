//! A pod's container translated into what the runtime runs: the command merged with the image's,
//! the environment, mounts, security context and resources as cgroup limits.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use kate_runtime::{ContainerConfig, ImageConfig, ImageRef, Resources, UserSpec};

use crate::env::{self, ConfigError};
use crate::volumes::{self, Prepared};

/// The CPU period of CFS quotas, in microseconds (upstream's default).
const CPU_PERIOD: u64 = 100_000;
/// The smallest CPU quota the kernel accepts, in microseconds.
const MIN_CPU_QUOTA: i64 = 1_000;
/// The smallest cpu.shares value.
const MIN_SHARES: u64 = 2;

/// The labels a container carries so a restarted kubelet can tell whose it is.
pub mod labels {
    /// The pod's UID.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The container's name in the pod.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// How many times the container was restarted before this one was created.
    pub const ATTEMPT: &str = "io.kubernetes.container.attempt";
}

/// The command line: `command` replaces the image's entrypoint (and drops its cmd), `args`
/// replaces its cmd; `$(VAR)` references expand from the container's environment.
pub fn command_line(container: &Container, image: &ImageConfig, env: &[(String, String)]) -> Vec<String> {
    let expand = |v: &Vec<String>| v.iter().map(|a| env::expand(a, env)).collect::<Vec<_>>();
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut argv = expand(command);
            argv.extend(args.as_ref().map(expand).unwrap_or_default());
            argv
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut argv = image.entrypoint.clone();
            argv.extend(expand(args));
            argv
        }
        _ => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// The cgroup limits from the container's requests and limits (requests default to limits).
pub fn resources(container: &Container) -> Resources {
    let res = container.resources.as_ref();
    let get = |list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
               name: &str,
               scale: i64| {
        list.and_then(|l| l.get(name))
            .and_then(|q| kate_quantity::parse_scaled(&q.0, scale))
    };
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let cpu_limit = get(limits, "cpu", 1000);
    let cpu_request = get(requests, "cpu", 1000).or(cpu_limit);
    Resources {
        cpu_shares: Some(
            cpu_request
                .map(|m| (m.max(0) as u64 * 1024 / 1000).max(MIN_SHARES))
                .unwrap_or(MIN_SHARES),
        ),
        cpu_quota: cpu_limit.map(|m| (m * CPU_PERIOD as i64 / 1000).max(MIN_CPU_QUOTA)),
        cpu_period: cpu_limit.map(|_| CPU_PERIOD),
        memory_limit: get(limits, "memory", 1),
        pids_limit: None,
    }
}

/// The effective security context: the container's fields over the pod's.
fn user(pod: &Pod, sc: Option<&SecurityContext>) -> Option<UserSpec> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let uid = sc.and_then(|s| s.run_as_user).or(psc.and_then(|p| p.run_as_user))?;
    let gid = sc.and_then(|s| s.run_as_group).or(psc.and_then(|p| p.run_as_group));
    let mut groups: Vec<u32> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    if let Some(fs) = psc.and_then(|p| p.fs_group).and_then(|g| u32::try_from(g).ok()) {
        groups.push(fs);
    }
    Some(UserSpec {
        uid: u32::try_from(uid).ok()?,
        gid: gid.and_then(|g| u32::try_from(g).ok()),
        supplemental_groups: groups,
    })
}

/// Refuses a container that must not run as root but would (CreateContainerConfigError).
fn check_non_root(
    pod: &Pod,
    sc: Option<&SecurityContext>,
    user: Option<&UserSpec>,
    image: &ImageConfig,
) -> Result<(), ConfigError> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|p| p.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let image_user = image.user.as_deref().unwrap_or("");
    let image_uid = image_user.split(':').next().unwrap_or("");
    match user {
        Some(u) if u.uid == 0 => Err(ConfigError::Missing(
            "container's runAsUser breaks non-root policy".into(),
        )),
        Some(_) => Ok(()),
        None if image_uid.is_empty() || image_uid == "0" || image_uid == "root" => Err(ConfigError::Missing(
            "container has runAsNonRoot and image will run as root".into(),
        )),
        None if image_uid.parse::<u32>().is_err() => Err(ConfigError::Missing(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_uid}), cannot verify user is non-root"
        ))),
        None => Ok(()),
    }
}

/// Everything the container's configuration is built from.
pub struct Inputs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container in it.
    pub container: &'a Container,
    /// The image's defaults.
    pub image: &'a ImageConfig,
    /// The image reference.
    pub image_ref: ImageRef,
    /// The environment, already built.
    pub env: Vec<(String, String)>,
    /// The pod's prepared volumes.
    pub volumes: &'a BTreeMap<String, Prepared>,
    /// The container's ID.
    pub id: String,
    /// Its restart count when created.
    pub attempt: u32,
    /// Where its log goes.
    pub log_path: &'a Path,
}

/// Builds the runtime configuration of one container.
pub fn container_config(inputs: Inputs<'_>) -> Result<ContainerConfig, ConfigError> {
    let Inputs {
        pod,
        container,
        image,
        image_ref,
        env,
        volumes,
        id,
        attempt,
        log_path,
    } = inputs;
    let sc = container.security_context.as_ref();
    let mut config = ContainerConfig::new(id, image_ref, log_path);
    config.args = command_line(container, image, &env);
    config.env = env;
    config.working_dir = container.working_dir.clone().filter(|w| !w.is_empty());
    config.mounts = volumes::mounts(container, volumes)?;
    if let Some(path) = container.termination_message_path.as_deref().filter(|p| !p.is_empty()) {
        let host = log_path.with_extension("termination-log");
        std::fs::write(&host, b"").map_err(|e| ConfigError::Missing(format!("creating {}: {e}", host.display())))?;
        config.mounts.push(kate_runtime::Mount {
            host_path: host,
            container_path: path.to_string(),
            read_only: false,
        });
    }
    config.user = user(pod, sc);
    check_non_root(pod, sc, config.user.as_ref(), image)?;
    config.privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    config.read_only_rootfs = sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false);
    config.no_new_privileges = sc.and_then(|s| s.allow_privilege_escalation) == Some(false);
    if let Some(caps) = sc.and_then(|s| s.capabilities.as_ref()) {
        config.capabilities_add = caps.add.clone().unwrap_or_default();
        config.capabilities_drop = caps.drop.clone().unwrap_or_default();
    }
    config.resources = resources(container);
    config.tty = container.tty.unwrap_or(false);
    config.stdin = container.stdin.unwrap_or(false);
    config.stdin_once = container.stdin_once.unwrap_or(false);
    let meta = &pod.metadata;
    config.labels = BTreeMap::from([
        (labels::POD_UID.to_string(), meta.uid.clone().unwrap_or_default()),
        (labels::POD_NAME.to_string(), meta.name.clone().unwrap_or_default()),
        (
            labels::POD_NAMESPACE.to_string(),
            meta.namespace.clone().unwrap_or_default(),
        ),
        (labels::CONTAINER_NAME.to_string(), container.name.clone()),
        (labels::ATTEMPT.to_string(), attempt.to_string()),
    ]);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["--default".into()],
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_merge_like_upstream() {
        let env = vec![("NAME".to_string(), "world".to_string())];
        let c = container(json!({"name": "c"}));
        assert_eq!(command_line(&c, &image(), &env), ["/entry", "--default"]);
        let c = container(json!({"name": "c", "args": ["hello", "$(NAME)"]}));
        assert_eq!(command_line(&c, &image(), &env), ["/entry", "hello", "world"]);
        let c = container(json!({"name": "c", "command": ["sh", "-c"], "args": ["echo $(NAME)"]}));
        assert_eq!(command_line(&c, &image(), &env), ["sh", "-c", "echo world"]);
        let c = container(json!({"name": "c", "command": ["sleep", "3600"]}));
        assert_eq!(command_line(&c, &image(), &env), ["sleep", "3600"]);
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let c = container(json!({"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}));
        let r = resources(&c);
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(CPU_PERIOD));
        assert_eq!(r.memory_limit, Some(64 << 20));
        let r = resources(&container(json!({"name": "c"})));
        assert_eq!(r.cpu_shares, Some(MIN_SHARES));
        assert_eq!(r.cpu_quota, None);
        assert_eq!(r.memory_limit, None);
    }

    #[test]
    fn run_as_non_root_is_enforced() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}}))
        .unwrap();
        let root_image = ImageConfig::default();
        assert!(check_non_root(&pod, None, None, &root_image).is_err());
        let u = UserSpec {
            uid: 1000,
            gid: None,
            supplemental_groups: vec![],
        };
        assert!(check_non_root(&pod, None, Some(&u), &root_image).is_ok());
        let named = ImageConfig {
            user: Some("nobody".into()),
            ..Default::default()
        };
        assert!(check_non_root(&pod, None, None, &named).is_err());
    }
}
