//! A fast, non-cryptographic hasher for the per-cycle maps keyed by short label strings: the
//! standard SipHash resists collision attacks the scheduler does not face, and costs more than
//! the lookups themselves in the hottest loops.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-rotate hashing over 8-byte words (the scheme rustc uses internally).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinguishes_short_strings() {
        let mut m: FastMap<(&str, &str), i32> = FastMap::default();
        m.insert(("kubernetes.io/hostname", "n1"), 1);
        m.insert(("kubernetes.io/hostname", "n2"), 2);
        m.insert(("kubernetes.io/hostnam", "en1"), 3);
        assert_eq!(m[&("kubernetes.io/hostname", "n1")], 1);
        assert_eq!(m[&("kubernetes.io/hostname", "n2")], 2);
        assert_eq!(m.len(), 3);
    }
}
