//! Oura tokens at rest: ChaCha20-Poly1305 with a random 96-bit nonce per value. Stored as
//! `v1.<key id>.<base64url(nonce ‖ ciphertext)>`; the key id (first 4 bytes of SHA-256 of the
//! key, hex) picks the key. The first configured key encrypts, every key decrypts, so a key is
//! rotated by putting a new one first and removing the old one once every token was refreshed.
//!
//! Also: the signed, expiring OAuth `state` (HMAC-SHA256 with a key derived from the client
//! secret), so the callback can trust which user a consent belongs to without server state.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token key is configured: set oura.token_keys")]
    NoKeys,
    #[error("stored token is malformed")]
    Malformed,
    #[error(
        "no configured token key can decrypt the stored token (was a key removed from oura.token_keys?)"
    )]
    UnknownKey,
}

/// Encrypts and decrypts stored tokens.
#[derive(Clone)]
pub struct TokenCipher {
    keys: Vec<([u8; 4], ChaCha20Poly1305)>,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCipher")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn key_id(key: &[u8; 32]) -> [u8; 4] {
    let d = Sha256::digest(key);
    [d[0], d[1], d[2], d[3]]
}

impl TokenCipher {
    pub fn new(keys: &[[u8; 32]]) -> Result<Self, TokenError> {
        if keys.is_empty() {
            return Err(TokenError::NoKeys);
        }
        Ok(TokenCipher {
            keys: keys
                .iter()
                .map(|k| (key_id(k), ChaCha20Poly1305::new(Key::from_slice(k))))
                .collect(),
        })
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let (id, cipher) = &self.keys[0];
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
            .expect("ChaCha20-Poly1305 encryption of a short token cannot fail");
        let mut blob = Vec::with_capacity(12 + ct.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ct);
        format!("v1.{}.{}", hex::encode(id), B64.encode(blob))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, TokenError> {
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(id), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let blob = B64.decode(blob).map_err(|_| TokenError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(TokenError::Malformed);
        }
        let (nonce, ct) = blob.split_at(12);
        // The matching key first, then every other one (ids can collide).
        let mut order: Vec<&ChaCha20Poly1305> = Vec::new();
        order.extend(
            self.keys
                .iter()
                .filter(|(k, _)| hex::encode(k) == id)
                .map(|(_, c)| c),
        );
        order.extend(
            self.keys
                .iter()
                .filter(|(k, _)| hex::encode(k) != id)
                .map(|(_, c)| c),
        );
        for c in order {
            if let Ok(pt) = c.decrypt(Nonce::from_slice(nonce), ct) {
                return String::from_utf8(pt).map_err(|_| TokenError::Malformed);
            }
        }
        Err(TokenError::UnknownKey)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// What a consent `state` carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Terra user id minted for this consent.
    pub u: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Random nonce.
    pub n: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state parameter is malformed")]
    Malformed,
    #[error("the state parameter's signature is invalid")]
    BadSignature,
    #[error("the consent link has expired; start the connection again")]
    Expired,
}

/// Signs and checks OAuth `state` values.
#[derive(Clone)]
pub struct StateSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSigner(***)")
    }
}

impl StateSigner {
    /// The key is derived from the client secret, so every node computes the same one.
    pub fn from_client_secret(secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"manifold oura oauth state v1\0");
        h.update(secret.as_bytes());
        StateSigner {
            key: h.finalize().into(),
        }
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("any key length");
        m.update(payload.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    pub fn sign(&self, user_id: &str, expires_at: i64) -> String {
        let nonce: [u8; 9] = rand::random();
        let state = State {
            u: user_id.to_string(),
            exp: expires_at,
            n: B64.encode(nonce),
        };
        let payload = B64.encode(serde_json::to_vec(&state).unwrap_or_default());
        let sig = B64.encode(self.mac(&payload));
        format!("{payload}.{sig}")
    }

    pub fn verify(&self, state: &str, now: i64) -> Result<State, StateError> {
        let (payload, sig) = state.split_once('.').ok_or(StateError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| StateError::Malformed)?;
        if !bool::from(self.mac(payload).ct_eq(&sig)) {
            return Err(StateError::BadSignature);
        }
        let raw = B64.decode(payload).map_err(|_| StateError::Malformed)?;
        let s: State = serde_json::from_slice(&raw).map_err(|_| StateError::Malformed)?;
        if s.exp < now {
            return Err(StateError::Expired);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_decrypt_rotate() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let c1 = TokenCipher::new(&[k1]).unwrap();
        let a = c1.encrypt("access-token");
        let b = c1.encrypt("access-token");
        assert_ne!(a, b, "random nonce per value");
        assert!(!a.contains("access-token"));
        assert_eq!(c1.decrypt(&a).unwrap(), "access-token");
        // rotate: new key first, old still decrypts
        let c21 = TokenCipher::new(&[k2, k1]).unwrap();
        assert_eq!(c21.decrypt(&a).unwrap(), "access-token");
        let n = c21.encrypt("x");
        assert_eq!(c21.decrypt(&n).unwrap(), "x");
        assert_eq!(c1.decrypt(&n), Err(TokenError::UnknownKey));
        let c2 = TokenCipher::new(&[k2]).unwrap();
        assert_eq!(c2.decrypt(&a), Err(TokenError::UnknownKey));
        // tamper
        let mut t = a.clone();
        t.pop();
        t.push(if a.ends_with('A') { 'B' } else { 'A' });
        assert!(c1.decrypt(&t).is_err());
        assert_eq!(c1.decrypt("plain"), Err(TokenError::Malformed));
        assert_eq!(TokenCipher::new(&[]).unwrap_err(), TokenError::NoKeys);
    }

    #[test]
    fn state_sign_verify() {
        let s = StateSigner::from_client_secret("secret");
        let st = s.sign("user-1", 1000);
        assert_eq!(s.verify(&st, 999).unwrap().u, "user-1");
        assert_eq!(s.verify(&st, 1001), Err(StateError::Expired));
        let other = StateSigner::from_client_secret("other");
        assert_eq!(other.verify(&st, 999), Err(StateError::BadSignature));
        assert_eq!(s.verify("nodot", 0), Err(StateError::Malformed));
        let (p, sig) = st.split_once('.').unwrap();
        let forged = format!("{}x.{sig}", p);
        assert!(s.verify(&forged, 0).is_err());
    }
}
