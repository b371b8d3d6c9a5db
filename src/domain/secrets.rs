//! Random identifiers and bearer secrets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A room id: 128 random bits, so ids cannot be guessed or collide.
pub fn new_room_id() -> String {
    random_text(16)
}

/// A session token (cookie or bearer): 256 random bits.
pub fn new_token() -> String {
    random_text(32)
}

/// A session's public id, what its owner lists and revokes it by: 128 random
/// bits in hex, unrelated to the token (knowing it logs no one in).
pub fn new_session_id() -> String {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tokens are stored hashed: a copy of the database does not log anyone in.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
