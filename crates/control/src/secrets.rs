//! Secrets at rest: the master key that encrypts endpoint keys, the token-signing key and the
//! admin credential, each a file in the data directory readable by its owner only.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::io::Write;
use std::path::Path;

/// Encrypts and decrypts endpoint keys with AES-256-GCM.
pub struct Secrets {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
#[error("a stored secret could not be decrypted: is the master key in the data directory the one it was written with?")]
pub struct DecryptError;

impl Secrets {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(master_key.into()) }
    }

    /// `base64(nonce ‖ ciphertext)`.
    pub fn encrypt(&self, plain: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(&Nonce::from(nonce_bytes), plain.as_bytes())
            .expect("AES-GCM encryption of a short string cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend(ct);
        STANDARD.encode(out)
    }

    pub fn decrypt(&self, enc: &str) -> Result<String, DecryptError> {
        let raw = STANDARD.decode(enc).map_err(|_| DecryptError)?;
        if raw.len() < 12 {
            return Err(DecryptError);
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| DecryptError)?;
        let plain = self.cipher.decrypt(&Nonce::from(nonce), ct).map_err(|_| DecryptError)?;
        String::from_utf8(plain).map_err(|_| DecryptError)
    }
}

/// A fresh random credential: 32 random bytes, URL-safe base64, never starting with '-' (which a
/// command line would take for a flag: `--token -x...`).
pub fn new_credential() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        let text = URL_SAFE_NO_PAD.encode(bytes);
        if !text.starts_with('-') {
            return text;
        }
    }
}

/// An endpoint's two keys, decrypted from their stored form (online and serverless endpoints alike).
pub(crate) fn decrypted_keys(
    secrets: &Secrets,
    primary_enc: &str,
    secondary_enc: &str,
) -> Result<sluice_api::endpoint::EndpointKeys, crate::ApiError> {
    let dec = |s: &str| secrets.decrypt(s).map_err(|e| crate::ApiError::Internal(e.to_string()));
    Ok(sluice_api::endpoint::EndpointKeys { primary_key: dec(primary_enc)?, secondary_key: dec(secondary_enc)? })
}

/// The key `regenerate-keys` stores for `body.key_type`: the caller's `keyValue`, or a fresh
/// random key when it is absent or equals the current key (Azure's SDK sends the current key).
pub(crate) fn rotated_key(
    current: &sluice_api::endpoint::EndpointKeys,
    body: &sluice_api::endpoint::RegenerateKeys,
) -> Result<String, crate::ApiError> {
    let current_value = match body.key_type {
        sluice_api::endpoint::KeyType::Primary => &current.primary_key,
        sluice_api::endpoint::KeyType::Secondary => &current.secondary_key,
    };
    match body.key_value.clone().filter(|v| v != current_value) {
        Some(v) if v.len() >= 16 && v.len() <= 256 && v.chars().all(|c| c.is_ascii_graphic()) => Ok(v),
        Some(_) => Err(crate::ApiError::BadRequest("keyValue must be 16-256 printable ASCII characters".into())),
        None => Ok(new_credential()),
    }
}

/// Reads the 32-byte key at `path`, creating it (mode 0600, written atomically) if absent.
pub fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not a 32-byte key", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_private(path, &key)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// Writes `data` to `path` readable by the owner only, via a temporary file and a rename.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_start_with_a_dash() {
        // One in 64 encodings starts with '-': 2,000 draws would hit one unless it is excluded.
        for _ in 0..2000 {
            let c = new_credential();
            assert!(!c.starts_with('-') && c.len() == 43, "{c}");
        }
    }

    #[test]
    fn keys_round_trip_and_ciphertext_hides_them() {
        let s = Secrets::new(&[7; 32]);
        let enc = s.encrypt("my-key");
        assert!(!enc.contains("my-key"));
        assert_ne!(enc, s.encrypt("my-key"), "fresh nonce each time");
        assert_eq!(s.decrypt(&enc).unwrap(), "my-key");
        assert!(Secrets::new(&[8; 32]).decrypt(&enc).is_err());
        assert!(s.decrypt("short").is_err());
    }

    #[test]
    fn key_files_are_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let a = load_or_create_key(&p).unwrap();
        assert_eq!(a, load_or_create_key(&p).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&p, b"short").unwrap();
        assert!(load_or_create_key(&p).is_err());
    }
}
