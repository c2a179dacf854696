//! Forwarding of names outside the cluster zone to the host's resolvers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_server::proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::Error;

/// At most this many upstreams are tried for one query.
const MAX_TRIES: usize = 2;

/// Sends queries to upstream resolvers, one after the other until one answers in time.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder to `upstreams`, waiting `timeout` for each.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder { upstreams, timeout }
    }

    /// Sends the wire-format `query` upstream and returns the answer (over TCP when the UDP
    /// answer was truncated). Fails when no upstream answers in time.
    pub async fn forward(&self, query: &[u8]) -> Result<Message, Error> {
        let id = Message::from_vec(query)
            .map_err(|e| Error::Io(format!("malformed query: {e}")))?
            .metadata
            .id;
        let mut last = Error::Io("no upstream resolvers".into());
        for upstream in self.upstreams.iter().take(MAX_TRIES) {
            match tokio::time::timeout(self.timeout, ask(*upstream, query, id)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => last = e,
                Err(_) => last = Error::Io(format!("{upstream} did not answer within {:?}", self.timeout)),
            }
        }
        Err(last)
    }
}

async fn ask(upstream: SocketAddr, query: &[u8], id: u16) -> Result<Message, Error> {
    let io = |e: std::io::Error| Error::Io(format!("asking {upstream}: {e}"));
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    let answer = loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        // Stray datagrams (late answers, spoofs) do not carry our ID.
        if let Ok(msg) = Message::from_vec(&buf[..n])
            && msg.metadata.id == id
        {
            break msg;
        }
    };
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let len = u16::try_from(query.len()).map_err(|_| Error::Io("query too long".into()))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
    stream.write_all(query).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).await.map_err(io)?;
    Message::from_vec(&body).map_err(|e| Error::Io(format!("malformed answer from {upstream}: {e}")))
}

/// The `nameserver` addresses of a resolv.conf (port 53), skipping those in `exclude` (our own
/// addresses, which would loop).
pub fn resolv_conf_nameservers(path: &Path, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !exclude.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::{MessageType, OpCode, Query};
    use hickory_server::proto::rr::rdata::A;
    use hickory_server::proto::rr::{Name, RData, Record, RecordType};
    use std::str::FromStr;

    fn query(id: u16) -> Vec<u8> {
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            Name::from_str("example.com.").expect("name"),
            RecordType::A,
        ));
        msg.to_vec().expect("encode")
    }

    #[tokio::test]
    async fn answers_are_relayed_and_silence_times_out() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let mut msg = Message::from_vec(&buf[..n]).expect("query");
                msg.metadata.message_type = MessageType::Response;
                let name = msg.queries[0].name().clone();
                msg.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 9))));
                let _ = server.send_to(&msg.to_vec().expect("encode"), from).await;
            }
        });
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let silent_addr = silent.local_addr().expect("addr");

        let fwd = Forwarder::new(vec![silent_addr, addr], Duration::from_millis(300));
        let started = std::time::Instant::now();
        let answer = fwd.forward(&query(7)).await.expect("the second upstream answers");
        assert_eq!(answer.metadata.id, 7);
        assert_eq!(answer.answers.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));

        let fwd = Forwarder::new(vec![silent_addr], Duration::from_millis(200));
        assert!(fwd.forward(&query(8)).await.is_err());
        drop(silent);
    }

    #[test]
    fn nameservers_come_from_resolv_conf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver 10.43.0.10\nnameserver fe80::1%eth0\n",
        )
        .expect("write");
        let got = resolv_conf_nameservers(&path, &["10.43.0.10".parse().expect("ip")]);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().expect("addr"),
                "[fe80::1]:53".parse().expect("addr"),
            ]
        );
    }
}
