//! The protobuf wire format: a cursor over `tag | value` records, knowing nothing of schemas.

use crate::DecodeError;

/// One record's payload, by wire type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, embedded messages and packed repeated scalars.
    Len(&'a [u8]),
    /// Wire type 5; no Kubernetes field uses it, but a reader must still skip it.
    Fixed32,
}

impl Value<'_> {
    /// Names the wire type for error messages.
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "fixed64",
            Value::Len(_) => "length-delimited",
            Value::Fixed32 => "fixed32",
        }
    }
}

/// Iterates the records of one message; yields an error (and then stops) on bad bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Reader<'a> {
    /// Reads the records of `buf`, one encoded message.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, failed: false }
    }

    fn record(&mut self) -> Result<(u32, Value<'a>), DecodeError> {
        let key = varint(&mut self.buf)?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|&t| t != 0 && t < 1 << 29)
            .ok_or_else(|| DecodeError::malformed(format!("invalid field number {}", key >> 3)))?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut self.buf)?),
            1 => Value::Fixed64(u64::from_le_bytes(
                take(&mut self.buf, 8)?
                    .try_into()
                    .map_err(|_| DecodeError::malformed("truncated fixed64"))?,
            )),
            2 => {
                let len = varint(&mut self.buf)?;
                let len = usize::try_from(len).map_err(|_| DecodeError::malformed("length overflows"))?;
                Value::Len(take(&mut self.buf, len)?)
            }
            5 => {
                take(&mut self.buf, 4)?;
                Value::Fixed32
            }
            // Groups (3, 4) are proto2 relics that Kubernetes never emits.
            other => {
                return Err(DecodeError::malformed(format!(
                    "unsupported wire type {other} for field {tag}"
                )));
            }
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let record = self.record();
        self.failed = record.is_err();
        Some(record)
    }
}

/// Reads a base-128 varint; at most 10 bytes, as a negative int32 or int64 takes.
pub(crate) fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf
            .split_first()
            .ok_or_else(|| DecodeError::malformed("truncated varint"))?;
        *buf = rest;
        // The tenth byte may only carry the 64th bit.
        if i == 9 && byte > 1 {
            return Err(DecodeError::malformed("varint overflows 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(DecodeError::malformed("varint longer than 10 bytes"))
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], DecodeError> {
    if buf.len() < len {
        return Err(DecodeError::malformed("record runs past the end of its message"));
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_int32_takes_ten_bytes() {
        let mut buf: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&mut buf).map(|v| v as i32), Ok(-1));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_overlong_and_truncated_varints() {
        assert!(varint(&mut &[0xff; 11][..]).is_err());
        assert!(varint(&mut &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..]).is_err());
        assert!(varint(&mut &[0x80][..]).is_err());
    }

    #[test]
    fn reader_stops_after_an_error() {
        let mut reader = Reader::new(&[0x0a, 0x05, b'a']);
        assert!(matches!(reader.next(), Some(Err(_))));
        assert!(reader.next().is_none());
    }

    #[test]
    fn reads_each_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, 0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0x01, b'x', 0x25, 0, 0, 0, 0,
        ];
        let records: Vec<_> = Reader::new(&buf).collect::<Result<_, _>>().unwrap_or_default();
        assert_eq!(records.len(), 4);
        assert!(matches!(records[0], (1, Value::Varint(150))));
        assert!(matches!(records[1], (2, Value::Fixed64(1))));
        assert!(matches!(records[2], (3, Value::Len(b"x"))));
        assert!(matches!(records[3], (4, Value::Fixed32)));
    }
}
