//! Cluster DNS: a `hickory-server` answering the cluster zone (see [`zone`]) from watches of
//! Services and EndpointSlices, and forwarding other names to the host's resolvers (a resolver
//! that does not answer in time gives SERVFAIL).
//!
//! Pods reach it as the `kube-system/kube-dns` Service ([`publish`]): a Service without selector
//! whose EndpointSlice (and Endpoints) point at the address this server listens on, so the
//! proxy's DNAT leads the Service's cluster IP to it.

pub mod forward;
pub mod zone;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::Name;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use tokio::net::{TcpListener, UdpSocket};

use crate::Error;
use crate::nft::Cidr;
use crate::watch::Cache;
use forward::Forwarder;
use zone::Zone;

/// The cluster IP of `kube-system/kube-dns` (the tenth address of the service range, as k3s).
pub const DEFAULT_SERVICE_IP: &str = "10.43.0.10";
/// The namespace of the DNS Service.
pub const SERVICE_NAMESPACE: &str = "kube-system";
/// The name of the DNS Service.
pub const SERVICE_NAME: &str = "kube-dns";
/// The `managed-by` label value of the EndpointSlice kate writes for the DNS Service.
pub const SLICE_MANAGER: &str = "kate-cluster-dns";

/// Settings of the DNS server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster domain.
    pub domain: String,
    /// Where names outside the cluster zone are forwarded.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for each upstream.
    pub upstream_timeout: Duration,
    /// Networks (the service range, the pod network) whose reverse names are answered here.
    pub reverse_cidrs: Vec<String>,
    /// Changes are coalesced: the zone is rebuilt at most this often.
    pub min_sync_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            domain: "cluster.local".into(),
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            reverse_cidrs: vec![crate::DEFAULT_SERVICE_CIDR.into()],
            min_sync_interval: Duration::from_millis(100),
        }
    }
}

/// A DNS server bound to UDP and TCP on one address, not yet serving.
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
}

impl DnsServer {
    /// Binds UDP and TCP on `ip`, port `preferred` if both are free there, else on a port free
    /// for both (say, when a host resolver or another cluster holds port 53).
    pub async fn bind(ip: IpAddr, preferred: u16) -> Result<DnsServer, Error> {
        if preferred != 0
            && let Ok(server) = DnsServer::bind_exact(SocketAddr::new(ip, preferred)).await
        {
            return Ok(server);
        }
        let mut last = None;
        for _ in 0..10 {
            let udp = UdpSocket::bind(SocketAddr::new(ip, 0))
                .await
                .map_err(|e| Error::Io(format!("binding UDP on {ip}: {e}")))?;
            let addr = udp
                .local_addr()
                .map_err(|e| Error::Io(format!("reading the bound address: {e}")))?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => return Ok(DnsServer { udp, tcp, addr }),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Io(format!(
            "finding a port free for UDP and TCP on {ip}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    async fn bind_exact(addr: SocketAddr) -> Result<DnsServer, Error> {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| Error::Io(format!("binding UDP {addr}: {e}")))?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Io(format!("binding TCP {addr}: {e}")))?;
        Ok(DnsServer { udp, tcp, addr })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts answering from `zone` (which the caller may swap) on the runtime's tasks.
    fn serve(self, zone: Arc<RwLock<Arc<Zone>>>, forwarder: Forwarder) -> hickory_server::Server<Handler> {
        let handler = Handler {
            zone,
            forwarder: Arc::new(forwarder),
        };
        let mut server = hickory_server::Server::new(handler);
        server.register_socket(self.udp);
        server.register_listener(self.tcp, Duration::from_secs(10), 64);
        server
    }

    /// Serves until the watches stop: answers from a zone rebuilt after every change of a
    /// Service or EndpointSlice.
    pub async fn run(self, client: kube::Client, config: Config) -> Result<(), Error> {
        let reverse = config
            .reverse_cidrs
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        let zone = Arc::new(RwLock::new(Arc::new(Zone::new(&config.domain, reverse.clone()))));
        tracing::info!(addr = %self.addr, domain = %config.domain, upstreams = ?config.upstreams, "cluster DNS listening");
        let forwarder = Forwarder::new(config.upstreams.clone(), config.upstream_timeout);
        let mut server = self.serve(zone.clone(), forwarder);

        let cache = Cache::start(client);
        let updater = async {
            cache.ready().await?;
            loop {
                let started = Instant::now();
                let next = Zone::build(
                    &config.domain,
                    reverse.clone(),
                    &cache.services.state(),
                    &cache.slices.state(),
                );
                *zone.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
                tokio::select! {
                    _ = cache.changed.notified() => {}
                    ended = cache.ended() => return ended,
                }
                let since = started.elapsed();
                if since < config.min_sync_interval {
                    tokio::time::sleep(config.min_sync_interval - since).await;
                }
            }
        };
        tokio::select! {
            done = server.block_until_done() => done.map_err(|e| Error::Io(format!("DNS server stopped: {e}"))),
            ended = updater => ended,
        }
    }
}

/// Answers one query: from the zone, or by forwarding.
struct Handler {
    zone: Arc<RwLock<Arc<Zone>>>,
    forwarder: Arc<Forwarder>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &request.edns {
            builder.edns(edns);
        }
        if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
            metadata.response_code = ResponseCode::NotImp;
            return send(&mut response, builder.build_no_records(metadata)).await;
        }
        let Ok(info) = request.request_info() else {
            metadata.response_code = ResponseCode::FormErr;
            return send(&mut response, builder.build_no_records(metadata)).await;
        };
        let name = Name::from(info.query.name());
        let qtype = info.query.query_type();
        let zone = self.zone.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(answer) = zone.lookup(&name, qtype) {
            metadata.authoritative = true;
            metadata.response_code = answer.code;
            let msg = builder.build(
                metadata,
                answer.answers.iter(),
                std::iter::empty(),
                answer.authority.iter(),
                answer.additionals.iter(),
            );
            return send(&mut response, msg).await;
        }
        match self.forwarder.forward(request.as_slice()).await {
            Ok(upstream) => {
                let mut metadata = upstream.metadata;
                metadata.id = request.metadata.id;
                let Message {
                    answers,
                    authorities,
                    additionals,
                    ..
                } = upstream;
                let msg = builder.build(
                    metadata,
                    answers.iter(),
                    authorities.iter(),
                    std::iter::empty(),
                    additionals.iter(),
                );
                send(&mut response, msg).await
            }
            Err(e) => {
                tracing::debug!(%name, error = %e, "forwarding failed");
                metadata.response_code = ResponseCode::ServFail;
                send(&mut response, builder.build_no_records(metadata)).await
            }
        }
    }
}

/// Sends `msg`, reporting a failure to send as SERVFAIL.
async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let mut failed = *msg.metadata();
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS response failed");
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: failed,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// Creates or updates `kube-system/kube-dns`: a Service with cluster IP `service_ip` and ports
/// 53/UDP `dns` and 53/TCP `dns-tcp` without selector, with an EndpointSlice and an Endpoints
/// object pointing at `target` (where this node's DNS server listens), on node `node_name`.
pub async fn publish(client: kube::Client, service_ip: &str, target: SocketAddr, node_name: &str) -> Result<(), Error> {
    let IpAddr::V4(ip) = target.ip() else {
        return Err(Error::Config(format!("the DNS server's address {target} is not IPv4")));
    };
    let port = i32::from(target.port());
    let labels: BTreeMap<String, String> = [
        ("k8s-app".to_string(), "kube-dns".to_string()),
        ("kubernetes.io/name".to_string(), "kate-dns".to_string()),
    ]
    .into();
    let ports = [("dns", "UDP"), ("dns-tcp", "TCP")];
    let service = Service {
        metadata: ObjectMeta {
            name: Some(SERVICE_NAME.into()),
            namespace: Some(SERVICE_NAMESPACE.into()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            cluster_ip: Some(service_ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto)| ServicePort {
                        name: Some((*name).into()),
                        port: 53,
                        protocol: Some((*proto).into()),
                        target_port: Some(IntOrString::Int(port)),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Service::default()
    };
    let services: Api<Service> = Api::namespaced(client.clone(), SERVICE_NAMESPACE);
    match services.get_opt(SERVICE_NAME).await? {
        None => {
            services.create(&PostParams::default(), &service).await?;
        }
        Some(mut current) => {
            let spec = current.spec.get_or_insert_with(Default::default);
            if spec.cluster_ip.as_deref() != Some(service_ip) {
                tracing::warn!(
                    current = ?spec.cluster_ip,
                    wanted = service_ip,
                    "kube-system/kube-dns exists with another cluster IP; leaving it"
                );
            }
            if spec.ports != service.spec.as_ref().and_then(|s| s.ports.clone()) || spec.selector.is_some() {
                spec.ports = service.spec.as_ref().and_then(|s| s.ports.clone());
                spec.selector = None;
                services.replace(SERVICE_NAME, &PostParams::default(), &current).await?;
            }
        }
    }

    let slice = EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{SERVICE_NAME}-{}", sanitize(node_name))),
            namespace: Some(SERVICE_NAMESPACE.into()),
            labels: Some(
                [
                    (crate::model::SERVICE_NAME_LABEL.to_string(), SERVICE_NAME.to_string()),
                    (
                        "endpointslice.kubernetes.io/managed-by".to_string(),
                        SLICE_MANAGER.to_string(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(node_name.into()),
            ..Endpoint::default()
        }],
        ports: Some(
            ports
                .iter()
                .map(|(name, proto)| SlicePort {
                    name: Some((*name).into()),
                    port: Some(port),
                    protocol: Some((*proto).into()),
                    ..SlicePort::default()
                })
                .collect(),
        ),
    };
    upsert(Api::namespaced(client.clone(), SERVICE_NAMESPACE), slice).await?;

    let endpoints = Endpoints {
        metadata: ObjectMeta {
            name: Some(SERVICE_NAME.into()),
            namespace: Some(SERVICE_NAMESPACE.into()),
            labels: Some(
                [(
                    "endpointslice.kubernetes.io/skip-mirror".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.to_string(),
                node_name: Some(node_name.into()),
                ..EndpointAddress::default()
            }]),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto)| EndpointPort {
                        name: Some((*name).into()),
                        port,
                        protocol: Some((*proto).into()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
            ..EndpointSubset::default()
        }]),
    };
    upsert(Api::namespaced(client, SERVICE_NAMESPACE), endpoints).await
}

/// Creates `obj`, or replaces the stored one with it.
async fn upsert<K>(api: Api<K>, mut obj: K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), &obj).await?;
        }
        Some(current) => {
            obj.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &obj).await?;
        }
    }
    Ok(())
}

/// A node name as part of an object name (lower case, dots and dashes kept).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::Query;
    use hickory_server::proto::rr::RecordType;
    use std::str::FromStr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
        let mut msg = Message::new(42, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket
            .send_to(&msg.to_vec().expect("encode"), server)
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv");
        Message::from_vec(&buf[..n]).expect("decode")
    }

    #[tokio::test]
    async fn the_server_answers_the_zone_and_fails_over_to_servfail() {
        let mut zone = Zone::new("cluster.local", vec![]);
        zone.insert(
            "default",
            "web",
            zone::DnsService {
                kind: zone::Kind::ClusterIp([10, 43, 0, 20].into()),
                ports: vec![],
                endpoints: vec![],
            },
        );
        let zone = Arc::new(RwLock::new(Arc::new(zone)));
        let server = DnsServer::bind([127, 0, 0, 1].into(), 0).await.expect("bind");
        let addr = server.local_addr();
        // An upstream that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let forwarder = Forwarder::new(vec![silent.local_addr().expect("addr")], Duration::from_millis(200));
        let _server = server.serve(zone, forwarder);

        let answer = ask(addr, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(answer.metadata.id, 42);
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data.to_string(), "10.43.0.20");

        let answer = ask(addr, "nope.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(answer.authorities.len(), 1, "the SOA");

        // The same over TCP (two-byte length, then the message).
        let mut msg = Message::new(43, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            Name::from_str("web.default.svc.cluster.local.").expect("name"),
            RecordType::A,
        ));
        let wire = msg.to_vec().expect("encode");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let len = u16::try_from(wire.len()).expect("short").to_be_bytes();
        stream.write_all(&len).await.expect("write");
        stream.write_all(&wire).await.expect("write");
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.expect("read");
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).await.expect("read");
        let answer = Message::from_vec(&body).expect("decode");
        assert_eq!(answer.metadata.id, 43);
        assert_eq!(answer.answers.len(), 1);

        let started = Instant::now();
        let answer = ask(addr, "example.com.", RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(silent);
    }
}
