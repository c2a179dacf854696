//! A minimal protobuf encoder for building test bodies field by field.

/// An encoded message under construction.
#[derive(Clone, Debug, Default)]
pub struct Msg(pub Vec<u8>);

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(mut self, tag: u32, wire: u64) -> Self {
        push_varint(&mut self.0, (u64::from(tag) << 3) | wire);
        self
    }

    /// A varint field; negative numbers take ten bytes, as Go writes them.
    pub fn int(self, tag: u32, v: i64) -> Self {
        let mut m = self.key(tag, 0);
        push_varint(&mut m.0, v as u64);
        m
    }

    /// A bool field.
    pub fn bool(self, tag: u32, v: bool) -> Self {
        self.int(tag, i64::from(v))
    }

    /// A double field.
    pub fn double(self, tag: u32, v: f64) -> Self {
        let mut m = self.key(tag, 1);
        m.0.extend_from_slice(&v.to_bits().to_le_bytes());
        m
    }

    /// A length-delimited field.
    pub fn bytes(self, tag: u32, v: &[u8]) -> Self {
        let mut m = self.key(tag, 2);
        push_varint(&mut m.0, v.len() as u64);
        m.0.extend_from_slice(v);
        m
    }

    /// A string field.
    pub fn str(self, tag: u32, v: &str) -> Self {
        self.bytes(tag, v.as_bytes())
    }

    /// An embedded message field.
    pub fn msg(self, tag: u32, v: Msg) -> Self {
        self.bytes(tag, &v.0)
    }

    /// One `map<string, string>` entry.
    pub fn entry(self, tag: u32, key: &str, value: &str) -> Self {
        self.msg(tag, Msg::new().str(1, key).str(2, value))
    }

    /// One `map<string, Message>` entry.
    pub fn entry_msg(self, tag: u32, key: &str, value: Msg) -> Self {
        self.msg(tag, Msg::new().str(1, key).msg(2, value))
    }

    /// A packed repeated varint field.
    pub fn packed(self, tag: u32, values: &[i64]) -> Self {
        let mut inner = Vec::new();
        for &v in values {
            push_varint(&mut inner, v as u64);
        }
        self.bytes(tag, &inner)
    }
}

/// A full request body: magic, then the runtime.Unknown envelope around `raw`.
pub fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = Msg::new().str(1, api_version).str(2, kind);
    let envelope = Msg::new().msg(1, type_meta).bytes(2, raw).str(3, "").str(4, "");
    [b"k8s\0".as_slice(), &envelope.0].concat()
}

/// ObjectMeta as Go writes it: every non-pointer field present, zero or not.
pub fn meta(name: &str, namespace: &str) -> Msg {
    Msg::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Msg::new())
}
