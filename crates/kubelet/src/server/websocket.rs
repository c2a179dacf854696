//! WebSocket transports: the `channel.k8s.io` framing of `exec`/`attach` (each binary message
//! starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal
//! resizes, and in v5 255 to close a channel), and a plain byte tunnel for SPDY carried in
//! binary messages (`SPDY/3.1+portforward.k8s.io`, kubectl's port-forward).

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::remotecommand::{Output, StreamOptions, Streams, TermSize};

/// `v5.channel.k8s.io`: v4 plus the close signal (channel 255), kubectl's only offer.
pub const CHANNEL_V5: &str = "v5.channel.k8s.io";
/// `v4.channel.k8s.io`: the Status on channel 3 (kube-rs offers it).
pub const CHANNEL_V4: &str = "v4.channel.k8s.io";
/// SPDY/3.1 in binary messages, for port-forward.
pub const SPDY_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long the client may take to answer our close before the connection is dropped.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the request asks for a WebSocket.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The first protocol the client offers that is in `supported`.
pub fn negotiate(headers: &HeaderMap, supported: &[&'static str]) -> Option<&'static str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|offered| supported.iter().find(|s| **s == offered).copied())
}

/// The `101 Switching Protocols` answer to a WebSocket request.
pub fn accept<B>(headers: &HeaderMap, protocol: &'static str, body: B) -> Result<Response<B>, String> {
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?
        .as_bytes();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| e.to_string())?,
    );
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Ok(resp)
}

/// Serves a remote command's streams over `ws` with the channel framing: returns the
/// [`Streams`] for the command and moves the messages in the background.
pub fn channels<T>(ws: WebSocketStream<T>, opts: StreamOptions) -> Streams
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel(16);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let (gone_tx, gone_rx) = oneshot::channel();
    let reader = tokio::spawn(read_client(
        stream,
        opts.stdin.then_some(stdin_tx),
        opts.tty.then_some(resize_tx),
        gone_tx,
    ));
    tokio::spawn(async move {
        let mut sink = sink;
        while let Some(out) = out_rx.recv().await {
            let (channel, data, last) = match out {
                Output::Stdout(b) => (STDOUT, b, false),
                Output::Stderr(b) => (STDERR, b, false),
                Output::Status(s) => (ERROR, Bytes::from(serde_json::to_vec(&s).unwrap_or_default()), true),
            };
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(&data);
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                reader.abort();
                return;
            }
            if last {
                break;
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        // The reader sees the client's answer to the close.
        let abort = reader.abort_handle();
        if tokio::time::timeout(CLOSE_WAIT, reader).await.is_err() {
            tracing::debug!("the client did not answer the WebSocket close");
            abort.abort();
        }
    });
    Streams {
        stdin: opts.stdin.then_some(stdin_rx),
        resize: opts.tty.then_some(resize_rx),
        output: out_tx,
        gone: gone_rx,
    }
}

async fn read_client<S>(
    mut stream: S,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Sender<TermSize>>,
    gone: oneshot::Sender<()>,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        let data = match msg {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match data.first().copied() {
            Some(STDIN) => {
                if let Some(tx) = &stdin
                    && data.len() > 1
                    && tx.send(data.slice(1..)).await.is_err()
                {
                    stdin = None;
                }
            }
            Some(RESIZE) => {
                if let (Some(tx), Ok(size)) = (&resize, serde_json::from_slice::<TermSize>(&data[1..])) {
                    let _ = tx.send(size).await;
                }
            }
            // v5: the client closed a channel; only stdin is the client's to close.
            Some(CLOSE) if data.get(1) == Some(&STDIN) => stdin = None,
            _ => {}
        }
    }
    let _ = gone.send(());
}

/// Carries a byte stream in binary messages both ways: returns our end of it. It ends when
/// either side does.
pub fn tunnel<T>(ws: WebSocketStream<T>) -> DuplexStream
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut r, mut w) = tokio::io::split(theirs);
        let inbound = async {
            while let Some(Ok(msg)) = stream.next().await {
                match msg {
                    Message::Binary(b) if w.write_all(&b).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = w.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let close = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let _ = sink.send(Message::Close(Some(close))).await;
        };
        tokio::select! {
            _ = inbound => {}
            _ = outbound => {}
        }
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    #[test]
    fn protocols_are_negotiated_in_the_clients_order() {
        let mut h = HeaderMap::new();
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io"),
        );
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        assert_eq!(negotiate(&h, &[CHANNEL_V5, CHANNEL_V4]), Some(CHANNEL_V4));
        assert_eq!(negotiate(&h, &[SPDY_PORTFORWARD]), None);
    }

    #[tokio::test]
    async fn channels_carry_stdin_output_close_and_status() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let mut streams = channels(server, opts);
        client
            .send(Message::Binary(Bytes::from_static(b"\x00hello")))
            .await
            .unwrap();
        client
            .send(Message::Binary(Bytes::from_static(b"\xff\x00")))
            .await
            .unwrap();
        let mut stdin = streams.stdin.take().unwrap();
        assert_eq!(stdin.recv().await.unwrap(), Bytes::from_static(b"hello"));
        assert!(stdin.recv().await.is_none(), "the close signal ends stdin");
        streams
            .output
            .send(Output::Stderr(Bytes::from_static(b"e")))
            .await
            .unwrap();
        streams
            .output
            .send(Output::Status(super::super::remotecommand::success()))
            .await
            .unwrap();
        let msg = client.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::Binary(Bytes::from_static(b"\x02e")));
        let msg = client.next().await.unwrap().unwrap();
        let Message::Binary(status) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(status[0], ERROR);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&status[1..]).unwrap()["status"],
            "Success"
        );
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
    }
}
