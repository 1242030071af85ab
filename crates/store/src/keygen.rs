//! Virtual key text: `sk-` + 16 random bytes in url-safe base64 (22 characters), stored only as
//! the sha256 hex of the whole string.

use rand::RngCore;
use sha2::{Digest, Sha256};

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = String::with_capacity(25);
    out.push_str("sk-");
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(URL_SAFE[((bits >> nbits) & 63) as usize]));
        }
    }
    if nbits > 0 {
        out.push(char::from(URL_SAFE[((bits << (6 - nbits)) & 63) as usize]));
    }
    out
}

pub fn hash_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    // Every request with a virtual key hashes it: encode straight into one String.
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Management endpoints take the plaintext or the hash: `sk-...` is hashed, anything else is
/// taken as the hash already.
pub fn token_of(key_or_hash: &str) -> String {
    if key_or_hash.starts_with("sk-") {
        hash_key(key_or_hash)
    } else {
        key_or_hash.to_owned()
    }
}

/// `sk-...abcd`: LiteLLM's `key_name` and how keys appear in messages.
pub fn abbreviate(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_litellm_keys() {
        let k = new_key();
        assert!(k.starts_with("sk-"));
        assert_eq!(k.len(), 25);
        assert_ne!(k, new_key());
        assert_eq!(hash_key("sk-1234").len(), 64);
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(token_of("sk-1234"), hash_key("sk-1234"));
        assert_eq!(token_of("abc"), "abc");
        assert_eq!(abbreviate("sk-1234567"), "sk-...4567");
    }
}
