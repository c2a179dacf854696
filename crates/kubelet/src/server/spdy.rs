//! SPDY/3.1, the multiplexing protocol kubectl speaks to the kubelet for `port-forward` (raw after
//! an HTTP upgrade, or tunnelled in a WebSocket) and for the `exec`/`attach` fallback.
//!
//! Only the subset those clients use: the peer opens every stream (SYN_STREAM, odd IDs) and the
//! server answers each with SYN_REPLY; data frames carry the bytes (FIN half-closes a direction);
//! RST_STREAM cancels a stream, PING is echoed, GOAWAY ends the session, SETTINGS and
//! WINDOW_UPDATE are ignored (kubectl's SPDY library does no flow control). Header blocks are
//! zlib streams primed with the SPDY/3 dictionary, one compression context per direction for
//! the whole session, each block ending in a sync flush.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: the stream is no longer needed.
const CANCEL: u32 = 5;
/// The most bytes one data frame carries when we write.
const MAX_DATA: usize = 32 * 1024;
/// A frame larger than this is refused (header blocks and data stay far below it).
const MAX_FRAME: usize = 1 << 24;

/// The header names of the SPDY/3 compression dictionary, each written as a 32-bit length and
/// the name; the dictionary ends with [`DICTIONARY_TAIL`].
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The raw text that ends the SPDY/3 dictionary (status codes, phrases, dates, media types).
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header compression dictionary.
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut d = Vec::with_capacity(1424);
        for word in DICTIONARY_WORDS {
            d.extend_from_slice(&(word.len() as u32).to_be_bytes());
            d.extend_from_slice(word.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// Header names and values of a stream (values with several parts keep their NUL separators).
pub type Headers = Vec<(String, String)>;

/// One frame as read off the wire, header blocks still compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// A control frame.
    Control {
        /// Its type.
        kind: u16,
        /// Its flags.
        flags: u8,
        /// Everything after the 8-byte frame header.
        payload: Bytes,
    },
    /// A data frame.
    Data {
        /// The stream.
        stream: u32,
        /// Its flags.
        flags: u8,
        /// The data.
        payload: Bytes,
    },
}

/// Reads one frame; `None` at a clean end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<RawFrame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(invalid("frame too large"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    Ok(Some(if head[0] & 0x80 != 0 {
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(invalid("not SPDY/3"));
        }
        RawFrame::Control {
            kind: (word & 0xffff) as u16,
            flags,
            payload: payload.into(),
        }
    } else {
        RawFrame::Data {
            stream: word & 0x7fff_ffff,
            flags,
            payload: payload.into(),
        }
    }))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("SPDY: {what}"))
}

/// Appends a control frame.
fn control_frame(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) {
    out.extend_from_slice(&(0x8000u16 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
}

/// Appends a data frame.
pub fn data_frame(out: &mut Vec<u8>, stream: u32, fin: bool, data: &[u8]) {
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
}

/// The 31-bit stream ID at the start of a control frame's payload.
fn stream_id(payload: &[u8]) -> io::Result<u32> {
    let b: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("short control frame"))?;
    Ok(u32::from_be_bytes(b) & 0x7fff_ffff)
}

/// Serializes a header block before compression.
pub fn encode_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses a decompressed header block.
pub fn decode_headers(block: &[u8]) -> io::Result<Headers> {
    let mut at = 0usize;
    let mut next = |n: usize| -> io::Result<&[u8]> {
        let part = block.get(at..at + n).ok_or_else(|| invalid("short header block"))?;
        at += n;
        Ok(part)
    };
    let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = word(next(4)?);
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = word(next(4)?);
        let name = String::from_utf8_lossy(next(len)?).to_ascii_lowercase();
        let len = word(next(4)?);
        let value = String::from_utf8_lossy(next(len)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// The receiving half of header compression: one zlib stream for the whole session.
pub struct HeaderReader {
    inflate: Decompress,
}

impl Default for HeaderReader {
    fn default() -> Self {
        HeaderReader {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderReader {
    /// Decompresses and parses one header block.
    pub fn read(&mut self, compressed: &[u8]) -> io::Result<Headers> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 256);
        let mut input = compressed;
        loop {
            let before = self.inflate.total_in();
            let result = self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            match result {
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) if used == 0 && out.len() < out.capacity() => break,
                Ok(_) => out.reserve(out.capacity().max(1024)),
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| invalid(&format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(invalid(&format!("header block: {e}"))),
            }
        }
        decode_headers(&out)
    }
}

/// The sending half of header compression.
pub struct HeaderWriter {
    deflate: Compress,
}

impl HeaderWriter {
    /// A compressor primed with the SPDY dictionary.
    pub fn new() -> io::Result<HeaderWriter> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .map_err(|e| invalid(&format!("header dictionary: {e}")))?;
        Ok(HeaderWriter { deflate })
    }

    /// Serializes and compresses one header block.
    pub fn write(&mut self, headers: &[(&str, &str)]) -> io::Result<Vec<u8>> {
        let block = encode_headers(headers);
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        loop {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| invalid(&format!("compressing headers: {e}")))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete once it had room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(256));
        }
    }
}

/// The stream was reset by the peer or the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SPDY stream is closed")]
pub struct Closed;

/// What the writer task sends.
enum Out {
    Reply(u32),
    Data { stream: u32, fin: bool, data: Bytes },
    Reset(u32),
    Ping(Bytes),
}

/// The sending side of one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    reset: Arc<AtomicBool>,
}

impl StreamWriter {
    /// Sends bytes to the peer.
    pub async fn write(&self, data: Bytes) -> Result<(), Closed> {
        let mut data = data;
        while !data.is_empty() {
            if self.reset.load(Ordering::Relaxed) {
                return Err(Closed);
            }
            let chunk = data.split_to(data.len().min(MAX_DATA));
            self.out
                .send(Out::Data {
                    stream: self.id,
                    fin: false,
                    data: chunk,
                })
                .await
                .map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Half-closes our direction (FIN).
    pub async fn finish(&self) {
        if !self.reset.load(Ordering::Relaxed) {
            let _ = self
                .out
                .send(Out::Data {
                    stream: self.id,
                    fin: true,
                    data: Bytes::new(),
                })
                .await;
        }
    }

    /// Cancels the stream (RST_STREAM).
    pub async fn reset(&self) {
        if !self.reset.swap(true, Ordering::Relaxed) {
            let _ = self.out.send(Out::Reset(self.id)).await;
        }
    }

    /// Whether the peer reset the stream.
    pub fn is_reset(&self) -> bool {
        self.reset.load(Ordering::Relaxed)
    }
}

/// A stream the peer opened.
pub struct Stream {
    /// The stream ID.
    pub id: u32,
    /// Its headers (names in lower case).
    pub headers: Headers,
    /// The peer's data; ends at its FIN or when it resets the stream.
    pub data: mpsc::Receiver<Bytes>,
    /// Our side.
    pub writer: StreamWriter,
}

impl Stream {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }
}

/// Serves a SPDY session on `io`: the streams the peer opens arrive on the returned channel
/// (already answered with SYN_REPLY); it ends when the connection does.
pub fn serve<T>(io: T) -> io::Result<mpsc::Receiver<Stream>>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let headers_out = HeaderWriter::new()?;
    let (r, w) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(64);
    let (accept_tx, accept_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = write_loop(w, out_rx, headers_out).await {
            tracing::debug!(error = %e, "SPDY session: writing failed");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = read_loop(r, out_tx, accept_tx).await {
            tracing::debug!(error = %e, "SPDY session: reading failed");
        }
    });
    Ok(accept_rx)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Out>,
    mut headers: HeaderWriter,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(MAX_DATA + 16);
    while let Some(out) = rx.recv().await {
        buf.clear();
        match out {
            Out::Reply(id) => {
                let mut payload = id.to_be_bytes().to_vec();
                payload.extend_from_slice(&headers.write(&[])?);
                control_frame(&mut buf, SYN_REPLY, 0, &payload);
            }
            Out::Data { stream, fin, data } => data_frame(&mut buf, stream, fin, &data),
            Out::Reset(id) => {
                let mut payload = id.to_be_bytes().to_vec();
                payload.extend_from_slice(&CANCEL.to_be_bytes());
                control_frame(&mut buf, RST_STREAM, 0, &payload);
            }
            Out::Ping(id) => control_frame(&mut buf, PING, 0, &id),
        }
        w.write_all(&buf).await?;
        if rx.is_empty() {
            w.flush().await?;
        }
    }
    w.shutdown().await
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    out: mpsc::Sender<Out>,
    accept: mpsc::Sender<Stream>,
) -> io::Result<()> {
    let mut headers_in = HeaderReader::default();
    // Where each open stream's incoming data goes, and the reset flag of every stream whose
    // writer is still alive.
    let mut inbound: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut resets: HashMap<u32, Arc<AtomicBool>> = HashMap::new();
    while let Some(frame) = read_frame(&mut r).await? {
        match frame {
            RawFrame::Data { stream, flags, payload } => {
                if let Some(tx) = inbound.get(&stream)
                    && !payload.is_empty()
                    && tx.send(payload).await.is_err()
                {
                    inbound.remove(&stream);
                }
                if flags & FLAG_FIN != 0 {
                    inbound.remove(&stream);
                }
            }
            RawFrame::Control {
                kind: SYN_STREAM,
                flags,
                payload,
            } => {
                let id = stream_id(&payload)?;
                let headers = headers_in.read(payload.get(10..).unwrap_or_default())?;
                resets.retain(|_, flag| Arc::strong_count(flag) > 1);
                let reset = Arc::new(AtomicBool::new(false));
                resets.insert(id, reset.clone());
                let (tx, rx) = mpsc::channel(16);
                if flags & FLAG_FIN == 0 {
                    inbound.insert(id, tx);
                }
                if out.send(Out::Reply(id)).await.is_err() {
                    break;
                }
                let stream = Stream {
                    id,
                    headers,
                    data: rx,
                    writer: StreamWriter {
                        id,
                        out: out.clone(),
                        reset,
                    },
                };
                if accept.send(stream).await.is_err() {
                    tracing::debug!(stream = id, "SPDY stream opened after the session stopped accepting");
                }
            }
            RawFrame::Control {
                kind: RST_STREAM,
                payload,
                ..
            } => {
                let id = stream_id(&payload)?;
                inbound.remove(&id);
                if let Some(flag) = resets.remove(&id) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            RawFrame::Control {
                kind: PING, payload, ..
            } => {
                let _ = out.send(Out::Ping(payload)).await;
            }
            RawFrame::Control { kind: GOAWAY, .. } => break,
            RawFrame::Control {
                kind: HEADERS, payload, ..
            } => {
                // Read to keep the compression context in step; nothing uses them.
                headers_in.read(payload.get(4..).unwrap_or_default())?;
            }
            // SETTINGS, WINDOW_UPDATE, NOOP and anything newer.
            RawFrame::Control { .. } => {}
        }
    }
    for flag in resets.values() {
        flag.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// A client side for tests: opens streams and reads replies.
#[cfg(test)]
pub mod testclient {
    use super::*;

    /// Encodes a SYN_STREAM.
    pub fn syn_stream(writer: &mut HeaderWriter, id: u32, fin: bool, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&writer.write(headers).unwrap());
        let mut out = Vec::new();
        control_frame(&mut out, SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &payload);
        out
    }

    /// Encodes a PING.
    pub fn ping(id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        control_frame(&mut out, PING, 0, &id.to_be_bytes());
        out
    }

    /// Encodes a RST_STREAM.
    pub fn rst(id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&CANCEL.to_be_bytes());
        control_frame(&mut out, RST_STREAM, 0, &payload);
        out
    }

    /// The stream ID of a SYN_REPLY, checking its header block decodes.
    pub fn reply_id(frame: &RawFrame, reader: &mut HeaderReader) -> Option<u32> {
        match frame {
            RawFrame::Control {
                kind: SYN_REPLY,
                payload,
                ..
            } => {
                reader.read(&payload[4..]).ok()?;
                stream_id(payload).ok()
            }
            _ => None,
        }
    }

    /// Whether the frame is a PING with this ID.
    pub fn is_ping(frame: &RawFrame, id: u32) -> bool {
        matches!(frame, RawFrame::Control { kind: PING, payload, .. } if payload[..] == id.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::testclient::*;
    use super::*;

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(d.ends_with(b",*,enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_two_contexts() {
        let mut writer = HeaderWriter::new().unwrap();
        let mut reader = HeaderReader::default();
        for i in 0..3 {
            let port = format!("{}", 8000 + i);
            let block = writer
                .write(&[("streamType", "data"), ("port", &port), ("requestID", "0")])
                .unwrap();
            let headers = reader.read(&block).unwrap();
            assert_eq!(
                headers,
                [
                    ("streamtype".to_string(), "data".to_string()),
                    ("port".to_string(), port),
                    ("requestid".to_string(), "0".to_string()),
                ]
            );
        }
    }

    #[test]
    fn frames_are_written_and_read_back() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut wire = Vec::new();
            data_frame(&mut wire, 3, true, b"hello");
            wire.extend_from_slice(&ping(7));
            let mut r = &wire[..];
            let data = read_frame(&mut r).await.unwrap().unwrap();
            assert_eq!(
                data,
                RawFrame::Data {
                    stream: 3,
                    flags: FLAG_FIN,
                    payload: Bytes::from_static(b"hello")
                }
            );
            let p = read_frame(&mut r).await.unwrap().unwrap();
            assert!(is_ping(&p, 7));
            assert!(read_frame(&mut r).await.unwrap().is_none());
        });
    }

    #[tokio::test]
    async fn a_session_replies_relays_and_resets() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut streams = serve(server).unwrap();
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut hw = HeaderWriter::new().unwrap();
        let mut hr = HeaderReader::default();
        cw.write_all(&syn_stream(
            &mut hw,
            1,
            false,
            &[("streamtype", "data"), ("port", "80")],
        ))
        .await
        .unwrap();
        let frame = read_frame(&mut cr).await.unwrap().unwrap();
        assert_eq!(reply_id(&frame, &mut hr), Some(1));
        let mut stream = streams.recv().await.unwrap();
        assert_eq!(stream.header("streamtype"), Some("data"));
        assert_eq!(stream.header("port"), Some("80"));

        let mut wire = Vec::new();
        data_frame(&mut wire, 1, true, b"ping?");
        cw.write_all(&wire).await.unwrap();
        assert_eq!(stream.data.recv().await.unwrap(), Bytes::from_static(b"ping?"));
        assert!(stream.data.recv().await.is_none(), "FIN ends the peer's data");

        stream.writer.write(Bytes::from_static(b"pong!")).await.unwrap();
        stream.writer.finish().await;
        let frame = read_frame(&mut cr).await.unwrap().unwrap();
        assert_eq!(
            frame,
            RawFrame::Data {
                stream: 1,
                flags: 0,
                payload: Bytes::from_static(b"pong!")
            }
        );
        let frame = read_frame(&mut cr).await.unwrap().unwrap();
        assert!(matches!(
            frame,
            RawFrame::Data {
                stream: 1,
                flags: FLAG_FIN,
                ..
            }
        ));

        cw.write_all(&ping(9)).await.unwrap();
        assert!(is_ping(&read_frame(&mut cr).await.unwrap().unwrap(), 9));

        // A second stream, then its reset: our writes to it fail.
        cw.write_all(&syn_stream(&mut hw, 3, false, &[("streamtype", "error")]))
            .await
            .unwrap();
        let frame = read_frame(&mut cr).await.unwrap().unwrap();
        assert_eq!(reply_id(&frame, &mut hr), Some(3));
        let second = streams.recv().await.unwrap();
        cw.write_all(&rst(3)).await.unwrap();
        cw.write_all(&ping(11)).await.unwrap();
        assert!(is_ping(&read_frame(&mut cr).await.unwrap().unwrap(), 11));
        assert!(second.writer.is_reset());
        assert_eq!(second.writer.write(Bytes::from_static(b"x")).await, Err(Closed));
    }
}
