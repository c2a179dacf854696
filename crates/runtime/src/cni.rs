//! The pod network through CNI plugins, called directly as the CNI specification describes (no
//! library): each plugin is a program in the CNI bin directory that reads its network config on
//! stdin, takes its arguments from `CNI_*` environment variables, and prints a result.
//!
//! A sandbox gets `lo` from the `loopback` plugin, and `eth0` from a chain of `bridge` (a host
//! bridge acting as the pods' gateway, with masquerading for traffic leaving the subnet),
//! `host-local` IP allocation on the node's pod subnet, and `portmap` for host ports.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::sandbox::PortMapping;

/// The CNI specification version kate speaks to plugins.
const CNI_VERSION: &str = "1.0.0";

/// The pod network of this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniConfig {
    /// The network's name: it names host-local's allocation directory and the plugins' firewall
    /// chains. Default `kate`.
    pub network: String,
    /// The host bridge the pods' veths are attached to. Default `kate0`.
    pub bridge: String,
    /// The node's pod CIDR, from which pod IPs are allocated, e.g. `10.42.0.0/24`.
    pub subnet: String,
    /// The gateway (the bridge's address); default the subnet's first address.
    pub gateway: Option<IpAddr>,
    /// The MTU of the bridge and veths; default the plugin's (the uplink's).
    pub mtu: Option<u32>,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            network: "kate".to_string(),
            bridge: "kate0".to_string(),
            subnet: "10.42.0.0/24".to_string(),
            gateway: None,
            mtu: None,
        }
    }
}

/// What a successful attachment left behind, kept with the sandbox for the deletion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Attachment {
    /// The chain's final result, passed back as `prevResult` on DEL.
    pub result: Value,
    /// The pod's IP on eth0.
    pub ip: Option<IpAddr>,
}

/// Calls the plugins for one node's network.
#[derive(Debug, Clone)]
pub(crate) struct Cni {
    /// Where plugin programs are.
    pub bin_dir: PathBuf,
    /// The network.
    pub config: CniConfig,
    /// host-local's allocation directory (`<dir>/<network>/<ip>` files).
    pub ipam_dir: PathBuf,
}

impl Cni {
    /// The network configuration list of eth0.
    pub fn conflist(&self) -> Value {
        let mut range = json!({ "subnet": self.config.subnet });
        if let Some(gw) = self.config.gateway {
            range["gateway"] = json!(gw.to_string());
        }
        let mut bridge = json!({
            "type": "bridge",
            "bridge": self.config.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[range]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.ipam_dir,
            },
        });
        if let Some(mtu) = self.config.mtu {
            bridge["mtu"] = json!(mtu);
        }
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.config.network,
            "plugins": [
                bridge,
                { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
            ],
        })
    }

    /// Removes the bridge when it carries an IPv4 address outside the node's subnet (left by
    /// an earlier pod CIDR): the bridge plugin refuses to reuse it, so no pod could start.
    /// Called only when no sandbox uses the bridge.
    pub fn drop_stale_bridge(&self) {
        let output = std::process::Command::new("ip")
            .args(["-j", "-4", "addr", "show", "dev", &self.config.bridge])
            .output();
        let Ok(output) = output else { return };
        let Ok(links) = serde_json::from_slice::<Value>(&output.stdout) else {
            return;
        };
        let (Some((net, prefix)), true) = (parse_subnet(&self.config.subnet), output.status.success()) else {
            return;
        };
        let stale = links
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["local"].as_str()?.parse::<std::net::Ipv4Addr>().ok())
            .any(|ip| !in_subnet(ip, net, prefix));
        if stale {
            tracing::info!(bridge = %self.config.bridge, subnet = %self.config.subnet, "removing a bridge left with another pod CIDR");
            self.remove_bridge();
        }
    }

    /// Deletes the pod bridge, if there is one. Called only when no sandbox uses it.
    pub fn remove_bridge(&self) {
        let exists = std::path::Path::new("/sys/class/net")
            .join(&self.config.bridge)
            .exists();
        if exists {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.config.bridge])
                .status();
        }
    }

    /// Attaches the sandbox `id` in namespace `netns`: lo, then eth0 with its port mappings.
    pub async fn add(&self, id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment> {
        let lo = json!({ "cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback" });
        self.invoke(&lo, "ADD", id, Some(netns), "lo").await?;
        let list = self.conflist();
        let mut prev: Option<Value> = None;
        for plugin in plugins(&list) {
            let conf = plugin_config(&list, &plugin, prev.take(), ports);
            prev = Some(self.invoke(&conf, "ADD", id, Some(netns), "eth0").await?);
        }
        let result = prev.unwrap_or(Value::Null);
        let ip = first_ip(&result);
        Ok(Attachment { result, ip })
    }

    /// Detaches the sandbox: the chain's plugins in reverse order. Plugins treat a missing
    /// namespace or allocation as done, so this can be repeated. Every plugin is called even when
    /// one fails; the first error is returned.
    pub async fn del(&self, id: &str, netns: Option<&Path>, prev: Option<Value>, ports: &[PortMapping]) -> Result<()> {
        let list = self.conflist();
        let mut first_error = None;
        for plugin in plugins(&list).iter().rev() {
            let conf = plugin_config(&list, plugin, prev.clone(), ports);
            if let Err(e) = self.invoke(&conf, "DEL", id, netns, "eth0").await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs one plugin.
    async fn invoke(
        &self,
        conf: &Value,
        command: &'static str,
        id: &str,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<Value> {
        let plugin = conf["type"].as_str().unwrap_or_default().to_string();
        let cni_error = |message: String| Error::Cni {
            plugin: plugin.clone(),
            command,
            message,
        };
        if plugin.is_empty() || plugin.contains('/') {
            return Err(cni_error("invalid plugin type".to_string()));
        }
        let mut child = tokio::process::Command::new(self.bin_dir.join(&plugin))
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns.map(Path::as_os_str).unwrap_or_default())
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| cni_error(format!("running {}: {e}", self.bin_dir.join(&plugin).display())))?;
        let input = serde_json::to_vec(conf).map_err(Error::json("CNI config"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|e| cni_error(format!("writing its config: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| cni_error(format!("waiting for it: {e}")))?;
        if !out.status.success() {
            return Err(cni_error(error_message(&out.stdout, &out.stderr)));
        }
        if command == "DEL" || out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| cni_error(format!("unparsable result: {e}")))
    }
}

/// The plugins of a configuration list.
/// An IPv4 subnet `a.b.c.d/len`.
fn parse_subnet(subnet: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (net, prefix) = subnet.split_once('/')?;
    Some((net.parse().ok()?, prefix.parse().ok().filter(|p| *p <= 32)?))
}

fn in_subnet(ip: std::net::Ipv4Addr, net: std::net::Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn plugins(list: &Value) -> Vec<Value> {
    list["plugins"].as_array().cloned().unwrap_or_default()
}

/// One plugin's stdin: its own config plus the list's name and version, the previous plugin's
/// result, and the runtime config its capabilities ask for.
fn plugin_config(list: &Value, plugin: &Value, prev: Option<Value>, ports: &[PortMapping]) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(prev) = prev.filter(|p| !p.is_null()) {
        conf["prevResult"] = prev;
    }
    if conf["capabilities"]["portMappings"] == json!(true) && !ports.is_empty() {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut m = json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.as_str(),
                });
                if let Some(ip) = &p.host_ip {
                    m["hostIP"] = json!(ip);
                }
                m
            })
            .collect();
        conf["runtimeConfig"] = json!({ "portMappings": mappings });
    }
    conf
}

/// The first address of a CNI result (`ips[].address` is `IP/prefix`).
fn first_ip(result: &Value) -> Option<IpAddr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .next()
}

/// A failed plugin's message: its error result (`msg`, `details`) or, failing that, its output.
fn error_message(stdout: &[u8], stderr: &[u8]) -> String {
    #[derive(Deserialize)]
    struct CniError {
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<CniError>(stdout)
        && !e.msg.is_empty()
    {
        return if e.details.is_empty() {
            e.msg
        } else {
            format!("{}: {}", e.msg, e.details)
        };
    }
    let text = format!("{}{}", String::from_utf8_lossy(stdout), String::from_utf8_lossy(stderr));
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Protocol;

    fn cni() -> Cni {
        Cni {
            bin_dir: "/usr/lib/cni".into(),
            config: CniConfig {
                subnet: "10.77.0.0/24".into(),
                ..CniConfig::default()
            },
            ipam_dir: "/var/lib/kate/cni".into(),
        }
    }

    #[test]
    fn subnets_contain_their_addresses() {
        let (net, prefix) = parse_subnet("10.42.3.0/24").unwrap();
        assert!(in_subnet("10.42.3.1".parse().unwrap(), net, prefix));
        assert!(!in_subnet("10.42.4.1".parse().unwrap(), net, prefix));
        assert!(parse_subnet("10.42.3.0").is_none());
    }

    #[test]
    fn conflist_has_bridge_and_portmap() {
        let list = cni().conflist();
        assert_eq!(list["name"], "kate");
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "kate0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.77.0.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/kate/cni");
        assert_eq!(list["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn plugin_input_carries_prev_result_and_port_mappings() {
        let list = cni().conflist();
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None,
        }];
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.77.0.2/24"}]});
        let portmap = plugin_config(&list, &list["plugins"][1], Some(prev.clone()), &ports);
        assert_eq!(portmap["name"], "kate");
        assert_eq!(portmap["cniVersion"], "1.0.0");
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
        );
        let bridge = plugin_config(&list, &list["plugins"][0], None, &ports);
        assert!(bridge.get("runtimeConfig").is_none() && bridge.get("prevResult").is_none());
        assert_eq!(first_ip(&prev), Some("10.77.0.2".parse().unwrap()));
    }

    #[test]
    fn plugin_errors_are_read_from_the_error_result() {
        let out = br#"{"code": 7, "msg": "failed to allocate", "details": "range full"}"#;
        assert_eq!(error_message(out, b""), "failed to allocate: range full");
        assert_eq!(error_message(b"", b"boom\n"), "boom");
    }
}
