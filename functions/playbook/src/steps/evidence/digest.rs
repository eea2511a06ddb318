//! SHA-256 and size of evidence read as a stream: `verify` and `download`
//! hash S3 bodies and downloaded files chunk by chunk, so a 64 GiB memory
//! image is never held in memory.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::case::custody::hex;

/// How much of a file is read at a time.
pub const FILE_CHUNK: usize = 1 << 20;

/// A SHA-256 and a byte count, fed one chunk at a time.
#[derive(Debug, Clone, Default)]
pub struct StreamDigest {
    hasher: Sha256,
    size: u64,
}

/// What a stream hashed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    /// Bytes read.
    pub size: u64,
    /// Lower-case hex SHA-256 of them.
    pub sha256: String,
}

impl StreamDigest {
    /// An empty digest.
    pub fn new() -> StreamDigest {
        StreamDigest::default()
    }

    /// Adds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size and SHA-256 of everything fed.
    pub fn finish(self) -> Digested {
        Digested {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        }
    }
}

/// Hashes everything `reader` yields, [`FILE_CHUNK`] bytes at a time.
pub fn digest_reader(mut reader: impl Read) -> std::io::Result<Digested> {
    let mut digest = StreamDigest::new();
    let mut buffer = vec![0u8; FILE_CHUNK];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(digest.finish()),
            Ok(n) => digest.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::custody::sha256_hex;

    #[test]
    fn chunks_of_any_size_hash_as_the_whole() {
        let data: Vec<u8> = (0..(3 * FILE_CHUNK + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let whole = Digested {
            size: data.len() as u64,
            sha256: sha256_hex(&data),
        };
        for chunk in [1, 7, 4096, FILE_CHUNK, FILE_CHUNK + 1] {
            let mut digest = StreamDigest::new();
            for part in data.chunks(chunk) {
                digest.update(part);
            }
            assert_eq!(digest.size(), data.len() as u64);
            assert_eq!(digest.finish(), whole, "chunks of {chunk} bytes");
        }
        assert_eq!(
            digest_reader(std::io::Cursor::new(&data)).unwrap(),
            whole,
            "a reader larger than one chunk"
        );
        assert_eq!(
            StreamDigest::new().finish().sha256,
            sha256_hex(b""),
            "nothing read is the empty digest"
        );
    }
}
