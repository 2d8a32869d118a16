//! Data-plane credentials: endpoint keys (compared by hash) and signed `aml_token`s.
//!
//! A token is `base64url(claims).base64url(hmac-sha256(claims))` with claims
//! `{"aud": <endpoint uid>, "exp": <epoch s>, "iat": <epoch s>}`; the signing key lives in the
//! data directory and never leaves the server.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of a key, as the routing table holds it.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Serialize, Deserialize)]
struct Claims {
    aud: String,
    exp: i64,
    iat: i64,
}

/// Signs and verifies endpoint tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// A token for the endpoint `audience`, valid from `now` for `lifetime_s` seconds.
    pub fn issue(&self, audience: &str, now: i64, lifetime_s: i64) -> String {
        let claims = Claims { aud: audience.to_owned(), exp: now + lifetime_s, iat: now };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let sig = URL_SAFE_NO_PAD.encode(self.mac(body.as_bytes()));
        format!("{body}.{sig}")
    }

    /// True when the signature holds, the audience is `audience` and `now` is before expiry.
    pub fn verify(&self, token: &str, audience: &str, now: i64) -> bool {
        let Some((body, sig)) = token.split_once('.') else { return false };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else { return false };
        if !constant_time_eq(&self.mac(body.as_bytes()), &sig) {
            return false;
        }
        let Ok(raw) = URL_SAFE_NO_PAD.decode(body) else { return false };
        let Ok(claims) = serde_json::from_slice::<Claims>(&raw) else { return false };
        claims.aud == audience && now < claims.exp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_audience_expiry_and_key() {
        let s = TokenSigner::new(b"k1".to_vec());
        let t = s.issue("ep-uid", 1000, 60);
        assert!(s.verify(&t, "ep-uid", 1059));
        assert!(!s.verify(&t, "ep-uid", 1060), "expired");
        assert!(!s.verify(&t, "other-uid", 1000), "another endpoint");
        assert!(!TokenSigner::new(b"k2".to_vec()).verify(&t, "ep-uid", 1000), "another key");
        let (body, _) = t.split_once('.').unwrap();
        assert!(!s.verify(&format!("{body}.AAAA"), "ep-uid", 1000), "forged signature");
        assert!(!s.verify("garbage", "ep-uid", 1000));
    }

    #[test]
    fn key_hash_compares() {
        assert!(constant_time_eq(&key_hash("a"), &key_hash("a")));
        assert!(!constant_time_eq(&key_hash("a"), &key_hash("b")));
    }
}
