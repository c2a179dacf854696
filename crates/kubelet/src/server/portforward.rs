//! Port-forward over SPDY (`portforward.k8s.io`), as kubectl speaks it: for each local
//! connection the client opens an `error` stream and a `data` stream with the same `requestid`
//! and `port` headers; the kubelet connects to that port of the pod, relays bytes on the data
//! stream, reports a failure as text on the error stream, and ends both when done.
//!
//! Also the older WebSocket form (`v4.channel.k8s.io` with `?ports=…`, what kube-rs uses): one
//! connection per port for the whole session, port N's data on channel 2N and its errors on
//! 2N+1, each channel opened by a frame holding the port number (two bytes, little-endian).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::spdy::Stream;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How long connecting to the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one direction of a connection may go on after the other ended.
const LINGER: Duration = Duration::from_secs(1);
/// How long the first stream of a pair waits for the second.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// The pod whose ports are forwarded to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where its ports are reached: its IP, or loopback for a host-network pod.
    pub ip: IpAddr,
    /// `name_namespace`, as upstream names the pod in messages.
    pub pod: String,
    /// Its UID.
    pub uid: String,
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    since: Option<Instant>,
}

/// Serves the streams of one port-forward session until the client ends it.
pub async fn serve(mut streams: mpsc::Receiver<Stream>, target: Target) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = streams.recv().await {
        let now = Instant::now();
        pending.retain(|_, p| p.since.is_some_and(|s| now.duration_since(s) < PAIR_TIMEOUT));
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        // Clients before requestid paired an error stream with the data stream two IDs on.
        let request = match stream.header("requestid") {
            Some(id) => id.to_string(),
            None if kind == "data" => stream.id.saturating_sub(2).to_string(),
            None => stream.id.to_string(),
        };
        let pair = pending.entry(request.clone()).or_default();
        pair.since.get_or_insert(now);
        match kind.as_str() {
            "error" => pair.error = Some(stream),
            "data" => pair.data = Some(stream),
            other => {
                tracing::debug!(streamtype = other, "port-forward: unknown stream type");
                stream.writer.reset().await;
                continue;
            }
        }
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                error: Some(error),
                data: Some(data),
                ..
            }) = pending.remove(&request)
        {
            tokio::spawn(forward(target.clone(), error, data));
        }
    }
}

/// Relays one connection.
async fn forward(target: Target, error: Stream, mut data: Stream) {
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok());
    let result = match port {
        Some(port) => relay(&target, port, &mut data).await,
        None => Err(format!("invalid port {:?}", data.header("port").unwrap_or(""))),
    };
    if let Err(e) = result {
        let message = format!(
            "error forwarding port {} to pod {}, uid {}: {e}",
            port.unwrap_or(0),
            target.pod,
            target.uid
        );
        tracing::debug!("{message}");
        let _ = error.writer.write(Bytes::from(message)).await;
    }
    data.writer.finish().await;
    error.writer.finish().await;
}

async fn relay(target: &Target, port: u16, data: &mut Stream) -> Result<(), String> {
    let addr = SocketAddr::new(target.ip, port);
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(format!("failed to connect to {addr}: {e}")),
        Err(_) => return Err(format!("timed out connecting to {addr}")),
    };
    let _ = tcp.set_nodelay(true);
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let writer = data.writer.clone();
    let inbound = &mut data.data;
    let upstream = async {
        while let Some(bytes) = inbound.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                break;
            }
        }
        // The client's FIN (or reset): the pod reads the end of its input.
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        let reset = async {
            while !writer.is_reset() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        tokio::pin!(reset);
        loop {
            let n = tokio::select! {
                n = from_pod.read(&mut buf) => n,
                _ = &mut reset => return,
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if writer.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // Once one direction ends, the other gets a moment to finish (as socat and upstream's
    // runtimes do); then both streams end, which the client waits for.
    tokio::pin!(upstream, downstream);
    tokio::select! {
        _ = &mut upstream => { let _ = tokio::time::timeout(LINGER, &mut downstream).await; }
        _ = &mut downstream => { let _ = tokio::time::timeout(LINGER, &mut upstream).await; }
    }
    Ok(())
}

/// The ports of a `?ports=80,8080` (or `?ports=80&ports=8080`) query.
pub fn ports_of(pairs: &[(String, String)]) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (_, value) in pairs.iter().filter(|(k, _)| k == "ports") {
        for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("invalid port {p:?}")),
            }
        }
    }
    Ok(ports)
}

/// Serves a `v4.channel.k8s.io` port-forward session on `ws` for `ports`; it ends when the
/// client closes it, or once every port's connection ended.
pub async fn serve_channels<T>(ws: WebSocketStream<T>, ports: Vec<u16>, target: Target)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    let mut to_pods = Vec::new();
    let mut from_pods = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let [lo, hi] = port.to_le_bytes();
        for channel in [data, error] {
            let _ = out_tx.send(vec![channel, lo, hi]).await;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        to_pods.push(tx);
        let (target, out) = (target.clone(), out_tx.clone());
        from_pods.push(tokio::spawn(async move {
            let addr = SocketAddr::new(target.ip, port);
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => format!("failed to connect to {addr}: {e}"),
                        _ => format!("timed out connecting to {addr}"),
                    };
                    let message = format!(
                        "error forwarding port {port} to pod {}, uid {}: {why}",
                        target.pod, target.uid
                    );
                    let mut frame = vec![error];
                    frame.extend_from_slice(message.as_bytes());
                    let _ = out.send(frame).await;
                    return;
                }
            };
            let (mut from_pod, mut to_pod) = tcp.into_split();
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if to_pod.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                let _ = to_pod.shutdown().await;
            });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_pod.read(&mut buf[1..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf[0] = data;
                        if out.send(buf[..=n].to_vec()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    drop(out_tx);
    let inbound = async {
        while let Some(Ok(msg)) = stream.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, rest)) = bytes.split_first() else {
                continue;
            };
            if channel % 2 == 0
                && let Some(tx) = to_pods.get(usize::from(channel / 2))
                && !rest.is_empty()
            {
                let _ = tx.send(bytes.slice(1..)).await;
            }
        }
    };
    let all_ended = futures::future::join_all(from_pods);
    tokio::select! {
        _ = inbound => {}
        _ = all_ended => {}
    }
    let _ = tokio::time::timeout(LINGER, writer).await;
}

#[cfg(test)]
mod tests {
    use super::super::spdy::{self, HeaderReader, HeaderWriter, RawFrame, data_frame, read_frame, testclient};
    use super::*;

    #[tokio::test]
    async fn a_connection_is_relayed_and_failures_reported() {
        // An echo server standing in for the pod.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
        });
        let (client, server) = tokio::io::duplex(1 << 16);
        let streams = spdy::serve(server).unwrap();
        let target = Target {
            ip: "127.0.0.1".parse().unwrap(),
            pod: "web_default".into(),
            uid: "u1".into(),
        };
        tokio::spawn(serve(streams, target));
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut hw = HeaderWriter::new().unwrap();
        let mut hr = HeaderReader::default();
        let p = port.to_string();
        let headers = |kind| [("streamtype", kind), ("port", p.as_str()), ("requestid", "0")];
        cw.write_all(&testclient::syn_stream(&mut hw, 1, true, &headers("error")))
            .await
            .unwrap();
        cw.write_all(&testclient::syn_stream(&mut hw, 3, false, &headers("data")))
            .await
            .unwrap();
        let mut wire = Vec::new();
        data_frame(&mut wire, 3, false, b"hello");
        cw.write_all(&wire).await.unwrap();
        let mut echoed = Vec::new();
        let mut fins = Vec::new();
        while fins.len() < 2 {
            match read_frame(&mut cr).await.unwrap().unwrap() {
                RawFrame::Data { stream, flags, payload } => {
                    if stream == 3 {
                        echoed.extend_from_slice(&payload);
                    }
                    if flags & 1 != 0 {
                        fins.push(stream);
                    }
                }
                other => assert!(testclient::reply_id(&other, &mut hr).is_some(), "{other:?}"),
            }
        }
        assert_eq!(echoed, b"hello");
        fins.sort();
        assert_eq!(fins, [1, 3]);

        // A closed port: the error stream says so.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap().port().to_string();
        drop(closed);
        let headers = [("streamtype", "error"), ("port", dead.as_str()), ("requestid", "1")];
        cw.write_all(&testclient::syn_stream(&mut hw, 5, true, &headers))
            .await
            .unwrap();
        let headers = [("streamtype", "data"), ("port", dead.as_str()), ("requestid", "1")];
        cw.write_all(&testclient::syn_stream(&mut hw, 7, false, &headers))
            .await
            .unwrap();
        let mut message = Vec::new();
        loop {
            if let RawFrame::Data {
                stream: 5,
                flags,
                payload,
            } = read_frame(&mut cr).await.unwrap().unwrap()
            {
                message.extend_from_slice(&payload);
                if flags & 1 != 0 {
                    break;
                }
            }
        }
        let message = String::from_utf8(message).unwrap();
        assert!(
            message.starts_with(&format!(
                "error forwarding port {dead} to pod web_default, uid u1: failed to connect"
            )),
            "{message}"
        );
    }
}
