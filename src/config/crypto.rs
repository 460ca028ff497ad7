//! Password encryption for `mysqk.ini` values (SPEC section 6).
//!
//! An encrypted value looks like `enc:v1:<base64>`, where the base64 payload is
//!
//! ```text
//! IV (16) || AES-256-CBC/PKCS7 ciphertext (16·n, n >= 1) || key id (4) || tag (12)
//! ```
//!
//! Why a trailer rather than only `IV || ciphertext`: CBC alone cannot tell a
//! wrong key from the right one (a wrong key usually fails the PKCS7 check,
//! but about 1 in 256 times it "succeeds" and yields a garbage password, which
//! would then surface as a confusing login failure). A magic block inside the
//! plaintext would catch wrong keys but not edits of the IV, which flip
//! plaintext bytes at will. So the trailer carries two things:
//!
//! * **key id** — the first 4 bytes of a value derived from the key. A
//!   mismatch means "encrypted with another key" and is reported as
//!   [`CryptoError::WrongKey`]. 32 bits of a PRF output say nothing useful
//!   about a 256-bit key, and they let an operator see *which* key a value
//!   needs ([`encrypted_key_id`] vs [`Key::id`]).
//! * **tag** — AES-CMAC (NIST SP 800-38B) over the version label, IV and
//!   ciphertext, truncated to 96 bits (encrypt-then-MAC). With the right key
//!   a failing tag means the stored text was altered: [`CryptoError::Tampered`].
//!
//! CMAC comes from RustCrypto's `cmac` over the `aes` crate, comparisons from
//! `subtle`, wiping from `zeroize`; this file only fixes the format. The
//! encryption key, MAC key and key id are derived from the 32-byte master key
//! by encrypting distinct constant blocks with it (AES as a PRF), so the same
//! key bytes are never used for two purposes.

use std::fmt;
use std::path::{Path, PathBuf};

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};
use aes::Aes256;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use cmac::{Cmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Prefix shared by every encrypted value, whatever its version.
pub const ENC_PREFIX: &str = "enc:";
/// Name of the environment variable holding the key.
pub const KEY_ENV: &str = "MYSQK_KEY";

const VERSION: &str = "v1";
const BLOCK: usize = 16;
const IV_LEN: usize = 16;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 12;
const TRAILER_LEN: usize = KEY_ID_LEN + TAG_LEN;
/// Domain label mixed into the MAC so a v1 tag can never validate under a
/// future format that reuses the same layout.
const MAC_LABEL: &[u8; 16] = b"mysqk enc:v1 mac";

// Labels for key derivation. Each is one AES block; the last byte varies.
const KDF_LABEL: &[u8; 15] = b"mysqk-kdf-v1\0\0\0";
const KDF_ENC_1: u8 = 1;
const KDF_ENC_2: u8 = 2;
const KDF_MAC_1: u8 = 3;
const KDF_MAC_2: u8 = 4;
const KDF_ID: u8 = 5;

/// Errors of key handling and of decrypting a value.
///
/// No variant ever carries key material or plaintext: these messages end up
/// in logs and on terminals.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key text is not 64 hex digits nor base64 of 32 bytes.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Like `InvalidKey`, naming where the key came from.
    #[error("invalid key in {origin}: {reason}")]
    InvalidKeyIn { origin: KeySource, reason: String },
    /// The configured key file could not be read.
    #[error("cannot read key file {}: {error}", path.display())]
    KeyFileRead {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// `decrypt` was given a value without the `enc:` prefix.
    #[error("value is not encrypted (no `enc:` prefix)")]
    NotEncrypted,
    /// `enc:<version>:` with a version this build does not know.
    #[error("unknown encrypted value version `{0}` (this mysqk understands v1); was it written by a newer mysqk?")]
    UnknownVersion(String),
    /// Structurally broken: bad base64, impossible length, truncated.
    #[error("corrupt encrypted value: {0}")]
    Corrupt(String),
    /// The value was encrypted with a different key.
    #[error(
        "wrong key: this value was encrypted with a different key (check {KEY_ENV} / key_file)"
    )]
    WrongKey,
    /// Right key, but the value was altered after encryption.
    #[error("encrypted value was modified after encryption (authentication failed); re-run `mysqk encrypt-password`")]
    Tampered,
    /// Decrypted fine but is not UTF-8 text, so it cannot be a password here.
    #[error("decrypted value is not valid UTF-8")]
    NotUtf8,
    /// The OS random generator failed (no IV or key can be made).
    #[error("operating system random generator failed: {0}")]
    Random(String),
}

/// Where a key was loaded from, for messages ("wrong key from key file X").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `MYSQK_KEY` environment variable.
    Env,
    /// A key file, as configured by `key_file`.
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => write!(f, "environment variable {KEY_ENV}"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
        }
    }
}

/// A 256-bit master key.
///
/// Debug shows only the key id, never the key; the bytes are wiped on drop
/// (best effort: copies made by moves cannot be reached).
#[derive(Clone)]
pub struct Key([u8; 32]);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Key {}

impl Key {
    /// Wrap raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// Parse 64 hex digits or base64 of exactly 32 bytes (surrounding
    /// whitespace, e.g. a key file's trailing newline, is ignored).
    pub fn parse(text: &str) -> Result<Key, CryptoError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(CryptoError::InvalidKey("key is empty".into()));
        }
        if t.len() == 64 {
            let mut out = [0u8; 32];
            if hex::decode_to_slice(t, &mut out).is_ok() {
                return Ok(Key(out));
            }
            out.zeroize();
            // 64 characters that are not all hex may still be base64.
        }
        // The reason names only lengths: echoing the text would leak a
        // mistyped (but nearly right) key into logs.
        let shape = || {
            format!(
                "expected 64 hex digits or base64 of 32 bytes, got {} characters",
                t.chars().count()
            )
        };
        let bytes = Zeroizing::new(
            b64()
                .decode(t)
                .map_err(|_| CryptoError::InvalidKey(shape()))?,
        );
        let out: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::InvalidKey(format!(
                "base64 decodes to {} bytes, expected 32",
                bytes.len()
            ))
        })?;
        Ok(Key(out))
    }

    /// A fresh random key.
    ///
    /// # Panics
    /// If the OS random generator fails, which on Linux only happens on a
    /// broken system; see [`Key::try_generate`] to handle it.
    #[must_use]
    pub fn generate() -> Key {
        match Key::try_generate() {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    /// A fresh random key, reporting a failing OS random generator.
    pub fn try_generate() -> Result<Key, CryptoError> {
        let mut out = [0u8; 32];
        getrandom::getrandom(&mut out).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(Key(out))
    }

    /// The key as 64 lowercase hex digits (to write a key file).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short public identifier of the key (8 hex digits), stored in every
    /// value it encrypts. Safe to print; it does not reveal the key.
    #[must_use]
    pub fn id(&self) -> String {
        hex::encode(self.keys().id)
    }

    fn keys(&self) -> DerivedKeys {
        let master = Aes256::new(GenericArray::from_slice(&self.0));
        let mut enc = [0u8; 32];
        enc[..16].copy_from_slice(&prf(&master, KDF_ENC_1));
        enc[16..].copy_from_slice(&prf(&master, KDF_ENC_2));
        let mut mac = [0u8; 32];
        mac[..16].copy_from_slice(&prf(&master, KDF_MAC_1));
        mac[16..].copy_from_slice(&prf(&master, KDF_MAC_2));
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&prf(&master, KDF_ID)[..KEY_ID_LEN]);
        DerivedKeys { enc, mac, id }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

struct DerivedKeys {
    enc: [u8; 32],
    mac: [u8; 32],
    id: [u8; KEY_ID_LEN],
}

impl Drop for DerivedKeys {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.mac.zeroize();
    }
}

/// Find the key: `MYSQK_KEY` (passed in as `env_value`) wins over `key_file`.
///
/// `Ok(None)` when neither is set (an empty or blank env value counts as
/// unset, as `MYSQK_KEY= mysqk ...` is a common way to unset it). A key file
/// that group or others may access is used, with a warning.
pub fn load_key(
    env_value: Option<&str>,
    key_file: Option<&Path>,
) -> Result<Option<(Key, KeySource)>, CryptoError> {
    if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
        let key = Key::parse(v).map_err(|e| in_source(e, KeySource::Env))?;
        return Ok(Some((key, KeySource::Env)));
    }
    let Some(path) = key_file else {
        return Ok(None);
    };
    let read_err = |error| CryptoError::KeyFileRead {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if let Some(msg) = key_file_warning(path, file_mode(&meta)) {
        log::warn!("{msg}");
    }
    // The file text is the key; do not leave it behind in freed memory.
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(read_err)?);
    let key = Key::parse(&text).map_err(|e| in_source(e, KeySource::File(path.to_path_buf())))?;
    Ok(Some((key, KeySource::File(path.to_path_buf()))))
}

fn in_source(e: CryptoError, origin: KeySource) -> CryptoError {
    match e {
        CryptoError::InvalidKey(reason) => CryptoError::InvalidKeyIn { origin, reason },
        other => other,
    }
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode()
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    0o600
}

/// The one-line warning for a key file with loose permissions, if any.
fn key_file_warning(path: &Path, mode: u32) -> Option<String> {
    if mode & 0o077 == 0 {
        return None;
    }
    Some(format!(
        "key file {} is accessible by group/others (mode {:04o}); run `chmod 600 {}`",
        path.display(),
        mode & 0o7777,
        path.display()
    ))
}

/// True when the value is in encrypted form (any version).
#[must_use]
pub fn is_encrypted(value: &str) -> bool {
    // Same leniency as `decrypt`, so the two never disagree about a value.
    value.trim_start().starts_with(ENC_PREFIX)
}

/// Encrypt a password into `enc:v1:...` with a fresh random IV.
///
/// # Panics
/// If the OS random generator fails; see [`try_encrypt`] to handle it.
#[must_use]
pub fn encrypt(key: &Key, plain: &str) -> String {
    match try_encrypt(key, plain) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// [`encrypt`], reporting a failing OS random generator instead of panicking.
pub fn try_encrypt(key: &Key, plain: &str) -> Result<String, CryptoError> {
    let mut iv = [0u8; IV_LEN];
    getrandom::getrandom(&mut iv).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(encrypt_with_iv(key, plain, &iv))
}

fn encrypt_with_iv(key: &Key, plain: &str, iv: &[u8; IV_LEN]) -> String {
    let keys = key.keys();
    let ct = cbc::Encryptor::<Aes256>::new(
        GenericArray::from_slice(&keys.enc),
        GenericArray::from_slice(iv),
    )
    .encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    let mut payload = Vec::with_capacity(IV_LEN + ct.len() + TRAILER_LEN);
    payload.extend_from_slice(iv);
    payload.extend_from_slice(&ct);
    let tag = mac(&keys.mac, &payload).finalize().into_bytes();
    payload.extend_from_slice(&keys.id);
    payload.extend_from_slice(&tag[..TAG_LEN]);
    format!("{ENC_PREFIX}{VERSION}:{}", b64().encode(&payload))
}

/// The key id a v1 value was encrypted with, to compare with [`Key::id`]
/// in a "wrong key" message. `None` if the value is not a readable v1 value.
#[must_use]
pub fn encrypted_key_id(value: &str) -> Option<String> {
    let payload = split_v1(value).ok()?;
    let end = payload.len() - TAG_LEN;
    Some(hex::encode(&payload[end - KEY_ID_LEN..end]))
}

/// Decrypt an `enc:v1:...` value.
///
/// The checks run from cheapest to most specific so that each failure gets
/// the most useful name: structure (`Corrupt`), then key id (`WrongKey`),
/// then tag (`Tampered`). Only an authenticated ciphertext is decrypted.
pub fn decrypt(key: &Key, value: &str) -> Result<String, CryptoError> {
    let payload = split_v1(value)?;
    let keys = key.keys();
    let tag_at = payload.len() - TAG_LEN;
    let id_at = tag_at - KEY_ID_LEN;
    if !bool::from(payload[id_at..tag_at].ct_eq(&keys.id)) {
        return Err(CryptoError::WrongKey);
    }
    // Constant-time check of the leftmost TAG_LEN bytes, so the tag cannot
    // be guessed byte by byte.
    mac(&keys.mac, &payload[..id_at])
        .verify_truncated_left(&payload[tag_at..])
        .map_err(|_| CryptoError::Tampered)?;
    let iv = &payload[..IV_LEN];
    let ct = &payload[IV_LEN..id_at];
    let plain = Zeroizing::new(
        cbc::Decryptor::<Aes256>::new(
            GenericArray::from_slice(&keys.enc),
            GenericArray::from_slice(iv),
        )
        .decrypt_padded_vec_mut::<Pkcs7>(ct)
        // Unreachable with an authentic tag unless the writer was broken.
        .map_err(|_| CryptoError::Corrupt("bad padding after decryption".into()))?,
    );
    std::str::from_utf8(&plain)
        .map(str::to_owned)
        .map_err(|_| CryptoError::NotUtf8)
}

/// Check prefix and version, decode base64 and check the length. The
/// returned payload is at least `IV + one block + trailer` long.
fn split_v1(value: &str) -> Result<Vec<u8>, CryptoError> {
    let rest = value
        .trim()
        .strip_prefix(ENC_PREFIX)
        .ok_or(CryptoError::NotEncrypted)?;
    let Some((version, body)) = rest.split_once(':') else {
        return Err(CryptoError::Corrupt(
            "missing version (expected `enc:v1:<base64>`)".into(),
        ));
    };
    if version != VERSION {
        // Only echo what looks like a version tag: the text after `enc:` might
        // be a password someone typed by hand.
        return Err(if looks_like_version(version) {
            CryptoError::UnknownVersion(version.to_owned())
        } else {
            CryptoError::Corrupt("malformed version (expected `enc:v1:<base64>`)".into())
        });
    }
    let payload = b64().decode(body).map_err(|_| {
        CryptoError::Corrupt("payload is not valid base64 (truncated or edited?)".into())
    })?;
    let min = IV_LEN + BLOCK + TRAILER_LEN;
    if payload.len() < min || !(payload.len() - IV_LEN - TRAILER_LEN).is_multiple_of(BLOCK) {
        return Err(CryptoError::Corrupt(format!(
            "payload is {} bytes, expected {min} + a multiple of {BLOCK} (truncated or edited?)",
            payload.len()
        )));
    }
    Ok(payload)
}

fn looks_like_version(v: &str) -> bool {
    v.len() <= 8 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Plaintext password held in memory: never printed by Debug/Display, so it
/// cannot slip into a log line through `{:?}` on a config struct. Wiped on
/// drop (best effort).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The password itself; call only where it is handed to the server/SMTP.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

// ---------------------------------------------------------------------------
// primitives

/// Base64 that accepts input with or without `=` padding: people trim it
/// when pasting, and it carries no information.
fn b64() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

fn prf(master: &Aes256, label: u8) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..15].copy_from_slice(KDF_LABEL);
    block[15] = label;
    let mut b = GenericArray::from(block);
    master.encrypt_block(&mut b);
    b.into()
}

/// AES-256-CMAC (NIST SP 800-38B) over `MAC_LABEL || msg`, ready to
/// finalize (encrypt) or verify (decrypt).
fn mac(mac_key: &[u8; 32], msg: &[u8]) -> Cmac<Aes256> {
    let mut m = <Cmac<Aes256> as KeyInit>::new(GenericArray::from_slice(mac_key));
    m.update(MAC_LABEL);
    m.update(msg);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    fn payload_of(value: &str) -> Vec<u8> {
        let body = value.strip_prefix("enc:v1:").expect("v1 value");
        b64().decode(body).expect("base64")
    }

    fn value_of(payload: &[u8]) -> String {
        format!("enc:v1:{}", b64().encode(payload))
    }

    /// Plain AES-256-CMAC, without our label.
    fn cmac_hex(key: &[u8], msg: &[u8]) -> String {
        let mut m = <Cmac<Aes256> as KeyInit>::new_from_slice(key).expect("32-byte key");
        m.update(msg);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn cmac_matches_nist_sp800_38b_aes256_vectors() {
        // Guards the choice of AES-256 (not 128) under the crate's CMAC.
        let k = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .expect("hex");
        let m = hex::decode(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        )
        .expect("hex");
        assert_eq!(cmac_hex(&k, &[]), "028962f61b7bf89efc6b551f4667d983");
        assert_eq!(cmac_hex(&k, &m[..16]), "28a7023f452e8f82bd4bf28d8c37c35c");
        assert_eq!(cmac_hex(&k, &m[..40]), "aaf3d8f1de5640c232f5b169b9c911e6");
        assert_eq!(cmac_hex(&k, &m), "e1992190549f6ed5696a2c056c315410");
    }

    /// Values written by the hand-rolled AES-CMAC this file used before it
    /// moved to the `cmac` crate (commit c5821a0, `encrypt` with random IVs). Operators' ini files hold such values: they must keep decrypting.
    /// (key text, key id, [(plaintext, value)]); `Plain::Long` is `long_password()`.
    type Fixture = (&'static str, &'static str, &'static [(Plain, &'static str)]);
    const OLD_VALUES: &[Fixture] = &[
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "12206ba9",
            &[
                (Plain::Is(""), "enc:v1:s7OaR8DSnKrt+ogl+9PjIksmAYn4g/DdO0FqIeT+X98SIGup41AkVSWF1RWXygEO"),
                (Plain::Is("hunter2"), "enc:v1:GuyRd8G7M86zvOGvisjSDuyAMzB42syrzk8T6fUkg4wSIGup85r7B7//XWgWx/Tm"),
                (Plain::Is("exactly16bytes!!"), "enc:v1:9POqXriATKRtd3RVq7+1jtemry64gPh1PRYUovs120IIGQLGdxsEg7eaDnJCEy45EiBrqVAWjGVj9HqvxOmxPQ=="),
                (Plain::Is("pässwörd 密码 🔑"), "enc:v1:bmGh+5ZJ5MMRId1DlWxJbxWTPzFq/LozCWFCbLAHhDDSgZz9+mtysTxYx9atm0CyEiBrqS3iaL+eAio9qMSu4g=="),
                (Plain::Long, "enc:v1:iU7lMrzt/ITPpiH4S3KhIuEfldI2VrFbP2IsGmnuFfvy96qVgyGvvUsZMUck9ghLCLQmG8lQa1nO3gTmy+gYB8kAlZ5yz8TNGPmd/qo6q3TTKvIcPgZhemmjjBHbPtCS4q1jgcLPTZQ2OgQafxGMdwlgSyl+rIXvoO+Ch+gJVeUYyvMAjV+bLU+MUeRLgfraMrFWC1ilgJ1SEiYh+vK69b1Jgb7M61XTNgVl8QkTTsmmD8UHOkHP0hn66G5l8R4PDpCdIUP4/OXyyJYwCXGVkDlLMPjeBePxqzv9AaCXaiTxpov56mtJtEuavH3fVUQ8HLiiEGBHAxoCTObk6yxAH/mbYpqwliJchH/ymOc4aSkD9a26kUyJDl0TP6lJ5d70qiYz+2PuvY8l6b2+vZyAGFlrRkt9UrI/PlBVhkJTR3jURGeeoFfai7vtg6p8YH0olOX4teAdEZgtJzqXpXrluAQoAkqCQIQviotbwbngaG9TyZAbZu/+VRotzX4FeL7YTqHOKa+Aq7bL8x4gJtAfMxPXXyc4+kaXORXcuvNx3TifN/AXwwj3VT2cXZ/Mgo7/ENRdMlzk/6t7T2ydQ9HmeZRkqIzfxN1u3/1P2Vgo9giwWKhnPzZeGDkDsI5eb/jvwgO8GnqnEfoLcOUj0q3YIm4JDFj2i+1ED6cLe02mZbuO48vRc4vIH59EZH0mUh71ui0mfzdNjAqvMeuYS5/ccb4hvqM+igEI6+veVREw+2aATghlJJuVIPoibuWrnmHuj4RGOF0ccbtIq7OEZE7rQzKBVSd86I0wzcC1RZCudvpFTWL8hJ2oS9hYeU7ZK2k3EiBrqRP4TKmhIz9BRIACEA=="),
            ],
        ),
        (
            "ee3c8a40524397866134fecc78bfff7ec008730af0c05999994f6014b4548be1",
            "5fb2f1f5",
            &[
                (Plain::Is(""), "enc:v1:yhqGpw3QCTNYUvecRSDpdtSja62W1zLnZ35bgUvAtwlfsvH17c24F3EA3HwzZvpc"),
                (Plain::Is("hunter2"), "enc:v1:1TVdBRg4wBTzqFkL0sf5IYKCESWXfqEtfkCr/LmZuf5fsvH1fboCx+qPY/8Mp/2m"),
                (Plain::Is("exactly16bytes!!"), "enc:v1:0WsGHlQgzKXyJr4gl8Z8zxZC9f/vmUC5kQCg80HVOEfkwdYhNTfrIGanr8PAnbJuX7Lx9f5V2TSaK07jPTbabQ=="),
                (Plain::Is("pässwörd 密码 🔑"), "enc:v1:EGKWcft1lPGtEqBQo3AxQIRrIBc+UNEn6VQDDsQnPVpWdzwN1qbnvecAzgD8ukKoX7Lx9R919YHmDVeorv1A0w=="),
                (Plain::Long, "enc:v1:6MSXwGknbZdrfBLG56Nb+xlikncx0nokvRGTheAclM8yIUrpHntshzZpI8xZg7yGIasf+1iVSLgwwegvJ556qFJSydyFG7ZexQvqB8sF622KbY2NbgqG5k2iuRYscz5m09CJAofl7qRphEa/oj9UJGSslxxaTqPnMRQX4pf/Rue87t0s5Z1J/quSExR/XvV2p2pJsJSRJn7dwKVmJwvkDJpbpBOiP1gPWJ+LXxiSY9CYo2j3HTzTIybqECuv1XlznqU1+47wzw2v7exC3lGNbP3XQjyDnk/UHKkeajgXLJ1NvG9eOQj9bfWdD5UZ7djnl9y+1wvIfPuY9T4ekoDdG+inTKBxy1+HbCPUZHsPhWiw6jhVYTY4VEmC1miP3tR442eMK/i5d+hU/v0btSzpzCjAVY9iyqwzIVeMPEWuwWoQ22DvbxJ0vEkxcDj3+8XEwv3GGCM4cBd270UD+hJc19EmRnL1Ku18NkEnxy1vnMGuZlg4qxMTEJydaZo1bMKPXeAGI9gHCw7d4DofZDwIdvaDMoRnfairX5bu/51+8ne2Y4K7HPEGNPBTdw1uFuCzF0C8+noA/IECbF8tR9t421ggqEIEez1ciGZxpS3CusanMXeL5/VCxLF0r6PWu+ALeE87NJwc3G0E2GCK5il31HXOOWHjDWyN7KIElI1fc4nn6Xp+AW8PF+ZMVQZhHbRHc0nzVuBpj3NJkCh1/uXLqoaOKmkciUnaJyWRImHBRusKYCpZwm3Q/woTa2+QNZWqlc/fSbZfb9t8jU6DbTLhXROMHTEiPx+2YWjFBYK6k51ER7q+6KZNYsNFFwcPRUdgX7Lx9RP75TzzgvS41ecQpA=="),
            ],
        ),
        (
            "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
            "3b7ed818",
            &[
                (Plain::Is(""), "enc:v1:5kIdc18m0xYMrSNcq8da/TY7yBjuAJsv36RmApJSyTo7ftgYT3OUSce+VYHMKpmh"),
                (Plain::Is("hunter2"), "enc:v1:yP0xk69GtGRnRhuzC4lcL++g5IkYB1U8R5vA/6kfz5Q7ftgYDL0yvexsiLA3tVlC"),
                (Plain::Is("exactly16bytes!!"), "enc:v1:69qIC5bJ5QJxq8PT4k8HUGg2mzUIMzvaJ0mFaMgHhQPiRGbj9qk9dRCIcnnHx6J7O37YGLniQfW6ttKbCPeB+Q=="),
                (Plain::Is("pässwörd 密码 🔑"), "enc:v1:BhdCEIgUPQxWUvvJOR2pY5URP7TaERaN0tm8NwjtbTblLn0wC+WZQdqbqJFZq7WoO37YGJyPOOgAa07gbsjU3g=="),
                (Plain::Long, "enc:v1:Z/3fN7nWqkBXeV4Hb5NwglajAtclNrfidnUg42P5rWdhpCEzCBE7aLTaOmOaWxORzQuzIzFK19WjQm9GA8ez4pBzoZmVix66HxgLEzCvwAQ8xoFK9mwb8JxRuRJq9nW11G0pYu++lx0x0l3BFLRkTrcD8f0HTKiBJSXAHSQtP2Mu2t0h/Tgk+yt4KOnbtgn4FUUa/bwucUCV4HejTCS361uco1GMxDuHC9DNn2F9NXcrwpzWDX7TzlbZnNRdnsx/6NRXNtb0MyA+M9TvzqpyZBckNPv5ACQhtlrsR5F58PF0nEyMSLs9I8aJPiV/yulFaSF+Euc5PfDfK6sMCUO2ke49hOpFFsmOO1mfbFIs9V9dxB2iSzUAgXoi0FmbCqyuh6DvspJtNsN9nflxq4BTa3ko9PgSEg7z4GtRLSa/fRoKvukGx7FXou0JO+lmloWEUIo2Ipn1OB703rzti+OmZr1y1hKP2lO/8WuS31ZBa50O4KdwBgrpYg3nY7KE82nBNMyEgAscD2KVdCjYc4C0lUUe+wlTtNq0wXa0m9R1yI7ej8ZCqNMrCCN3+SAsyO1Qn104ONMWmjc0Xhd+n3b9TTd7fhRhdx1YHLMcnR7z3QsD2CPSdCMWktofyWmEiXfaw+TjSrCmFlTep3FZsVxUxp6GkyNFAeF/EPu9QPMbHa9fIwq1gSZ1M00fZJBmykn49W/HK5YLnh3kATfP2iD54D9P3SPEkjlUzagECfzJJ5LWId4u6OtqlmBP+jEAq+XXkDToz4TW+NtDgV1SKVk7jVIBBq64TXXiZTCRFlVjq2JRXz1SpBy/xLBZ5BVtL53aO37YGFbSB4U9iVO7MndYeQ=="),
            ],
        ),
    ];

    #[derive(Clone, Copy)]
    enum Plain {
        Is(&'static str),
        Long,
    }

    /// The long fixture password: 760 bytes with the ini's special characters.
    fn long_password() -> String {
        (0..40).map(|i| format!("Long-{i:02}-;#=:\"' ")).collect()
    }

    #[test]
    fn values_written_by_the_old_code_still_decrypt() {
        let mut n = 0;
        for (key_text, id, values) in OLD_VALUES {
            let k = Key::parse(key_text).expect("fixture key");
            assert_eq!(&k.id(), id, "key id derivation changed");
            for (plain, value) in *values {
                let want = match plain {
                    Plain::Is(s) => s.to_string(),
                    Plain::Long => long_password(),
                };
                assert_eq!(decrypt(&k, value).expect("old value decrypts"), want);
                assert_eq!(encrypted_key_id(value).as_deref(), Some(*id));
                n += 1;
            }
        }
        assert_eq!(n, 15);
    }

    #[test]
    fn old_values_keep_their_error_messages() {
        let (key_a, _, values) = OLD_VALUES[0];
        let (key_b, _, _) = OLD_VALUES[1];
        let value = values[1].1;
        let a = Key::parse(key_a).expect("key");
        let b = Key::parse(key_b).expect("key");
        assert_eq!(
            decrypt(&b, value).expect_err("other key").to_string(),
            "wrong key: this value was encrypted with a different key (check MYSQK_KEY / key_file)"
        );
        let mut p = payload_of(value);
        p[IV_LEN] ^= 0x40;
        assert_eq!(
            decrypt(&a, &value_of(&p)).expect_err("edited").to_string(),
            "encrypted value was modified after encryption (authentication failed); \
             re-run `mysqk encrypt-password`"
        );
        // A new value under the same key decrypts with the old ones: the
        // format did not move.
        let fresh = encrypt(&a, "hunter2");
        assert_eq!(encrypted_key_id(&fresh), encrypted_key_id(value));
    }

    #[test]
    fn round_trip() {
        let k = Key::generate();
        for plain in [
            "",
            "a",
            "secret",
            "exactly16bytes!!",
            "pässwörd 密码 🔑",
            &"x".repeat(1000),
        ] {
            let enc = encrypt(&k, plain);
            assert!(is_encrypted(&enc));
            assert!(enc.starts_with("enc:v1:"));
            assert_eq!(decrypt(&k, &enc).expect("decrypts"), plain);
        }
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        let k = key(7);
        let enc = encrypt(&k, "pw");
        assert!(is_encrypted(&format!("  {enc}")));
        assert!(!is_encrypted("plain"));
        assert_eq!(decrypt(&k, &format!("  {enc}\n")).expect("decrypts"), "pw");
    }

    #[test]
    fn padding_may_be_stripped() {
        let k = key(7);
        // 20 bytes of plaintext -> 64-byte payload -> base64 ends in `==`.
        let enc = encrypt(&k, &"p".repeat(20));
        assert!(enc.ends_with('='), "{enc}");
        let stripped = enc.trim_end_matches('=');
        assert_eq!(decrypt(&k, stripped).expect("decrypts"), "p".repeat(20));
    }

    #[test]
    fn same_plaintext_encrypts_differently() {
        let k = key(1);
        let a = encrypt(&k, "same");
        let b = encrypt(&k, "same");
        assert_ne!(a, b);
        assert_ne!(payload_of(&a)[..IV_LEN], payload_of(&b)[..IV_LEN]);
    }

    #[test]
    fn layout_is_iv_ciphertext_keyid_tag() {
        let k = key(3);
        let iv = [9u8; 16];
        let enc = encrypt_with_iv(&k, "abc", &iv);
        let p = payload_of(&enc);
        assert_eq!(p.len(), 16 + 16 + 4 + 12);
        assert_eq!(&p[..16], &iv);
        assert_eq!(hex::encode(&p[32..36]), k.id());
        assert_eq!(encrypted_key_id(&enc), Some(k.id()));
        // Deterministic for a fixed IV: guards the format against silent change.
        assert_eq!(enc, encrypt_with_iv(&k, "abc", &iv));
    }

    #[test]
    fn wrong_key_is_detected_for_many_random_keys() {
        let right = Key::generate();
        let enc = encrypt(&right, "hunter2");
        for _ in 0..2000 {
            let other = Key::generate();
            match decrypt(&other, &enc) {
                Err(CryptoError::WrongKey) => {}
                r => panic!("expected WrongKey, got {r:?}"),
            }
        }
    }

    #[test]
    fn wrong_key_with_forged_key_id_is_still_rejected() {
        // Someone copies the right key id into the value (or the 32-bit ids
        // collide): the tag still fails, so never garbage.
        let right = key(1);
        let wrong = key(2);
        let mut p = payload_of(&encrypt(&right, "hunter2"));
        let end = p.len() - TAG_LEN;
        p[end - KEY_ID_LEN..end].copy_from_slice(&wrong.keys().id);
        match decrypt(&wrong, &value_of(&p)) {
            Err(CryptoError::Tampered) => {}
            r => panic!("expected Tampered, got {r:?}"),
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let k = key(5);
        let enc = encrypt(&k, "a password of some length");
        let p = payload_of(&enc);
        for i in 0..p.len() {
            for bit in 0..8 {
                let mut q = p.clone();
                q[i] ^= 1 << bit;
                match decrypt(&k, &value_of(&q)) {
                    Err(CryptoError::Tampered) | Err(CryptoError::WrongKey) => {}
                    r => panic!("byte {i} bit {bit}: expected Tampered/WrongKey, got {r:?}"),
                }
            }
        }
    }

    #[test]
    fn edited_base64_text_is_rejected() {
        let k = key(5);
        let enc = encrypt(&k, "pw");
        let start = "enc:v1:".len();
        for i in start..enc.len() {
            let mut chars: Vec<char> = enc.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let edited: String = chars.into_iter().collect();
            assert!(decrypt(&k, &edited).is_err(), "edit at {i} accepted");
        }
    }

    #[test]
    fn truncated_is_corrupt() {
        let k = key(5);
        let enc = encrypt(&k, "pw");
        let p = payload_of(&enc);
        for len in 0..p.len() {
            match decrypt(&k, &value_of(&p[..len])) {
                Err(CryptoError::Corrupt(_)) => {}
                r => panic!("len {len}: expected Corrupt, got {r:?}"),
            }
        }
        // Cut in the middle of the base64 text.
        match decrypt(&k, &enc[..enc.len() - 3]) {
            Err(CryptoError::Corrupt(_)) => {}
            r => panic!("expected Corrupt, got {r:?}"),
        }
    }

    #[test]
    fn bad_base64_is_corrupt() {
        let k = key(5);
        for v in ["enc:v1:", "enc:v1:!!!!", "enc:v1:abc def", "enc:v1:ä"] {
            match decrypt(&k, v) {
                Err(CryptoError::Corrupt(_)) => {}
                r => panic!("{v}: expected Corrupt, got {r:?}"),
            }
        }
    }

    #[test]
    fn version_and_prefix_errors() {
        let k = key(5);
        match decrypt(&k, "enc:v2:AAAA") {
            Err(CryptoError::UnknownVersion(v)) => assert_eq!(v, "v2"),
            r => panic!("expected UnknownVersion, got {r:?}"),
        }
        assert!(matches!(
            decrypt(&k, "plain"),
            Err(CryptoError::NotEncrypted)
        ));
        // No version separator: the text may be a hand-typed password, so it
        // must not be echoed back as a "version".
        match decrypt(&k, "enc:MySecretPw") {
            Err(e @ CryptoError::Corrupt(_)) => assert!(!e.to_string().contains("MySecretPw")),
            r => panic!("expected Corrupt, got {r:?}"),
        }
        match decrypt(&k, "enc:MySecretPw:xx") {
            Err(e @ CryptoError::Corrupt(_)) => assert!(!e.to_string().contains("MySecretPw")),
            r => panic!("expected Corrupt, got {r:?}"),
        }
    }

    #[test]
    fn non_utf8_plaintext_is_reported() {
        // Build a value the normal API cannot produce: authentic, but with
        // invalid UTF-8 inside.
        let k = key(8);
        let keys = k.keys();
        let iv = [1u8; 16];
        let ct = cbc::Encryptor::<Aes256>::new(
            GenericArray::from_slice(&keys.enc),
            GenericArray::from_slice(&iv),
        )
        .encrypt_padded_vec_mut::<Pkcs7>(&[0xff, 0xfe, b'a']);
        let mut p = iv.to_vec();
        p.extend_from_slice(&ct);
        let tag = mac(&keys.mac, &p).finalize().into_bytes();
        p.extend_from_slice(&keys.id);
        p.extend_from_slice(&tag[..TAG_LEN]);
        assert!(matches!(
            decrypt(&k, &value_of(&p)),
            Err(CryptoError::NotUtf8)
        ));
    }

    #[test]
    fn errors_never_contain_plaintext_or_key() {
        let k = key(0xab);
        let enc = encrypt(&k, "TopSecret");
        let mut p = payload_of(&enc);
        p[20] ^= 1;
        let errors = [
            decrypt(&key(1), &enc).expect_err("wrong key"),
            decrypt(&k, &value_of(&p)).expect_err("tampered"),
            decrypt(&k, &enc[..20]).expect_err("truncated"),
        ];
        for e in errors {
            let s = format!("{e} {e:?}");
            assert!(!s.contains("TopSecret"), "{s}");
            assert!(!s.contains(&k.to_hex()), "{s}");
        }
    }

    #[test]
    fn key_parse_hex_and_base64() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let k = Key::parse(hex).expect("hex");
        assert_eq!(k.to_hex(), hex);
        assert_eq!(Key::parse(&hex.to_uppercase()).expect("HEX"), k);
        assert_eq!(Key::parse(&format!("  {hex}\n")).expect("trimmed"), k);

        let b = b64().encode((0u8..32).collect::<Vec<_>>());
        assert_eq!(Key::parse(&b).expect("base64"), k);
        assert_eq!(Key::parse(b.trim_end_matches('=')).expect("unpadded"), k);
        assert_eq!(Key::parse(&format!("{b}\n")).expect("trimmed"), k);

        let g = Key::generate();
        assert_eq!(Key::parse(&g.to_hex()).expect("round trip"), g);
        assert_ne!(Key::generate(), g);
    }

    #[test]
    fn key_parse_rejects_bad_input_without_echoing_it() {
        let bad = [
            "",
            "   ",
            "abc",
            // 63 and 65 hex digits
            &"a".repeat(63),
            &"a".repeat(65),
            // 64 chars, not all hex, not base64 of 32 bytes
            &format!("{}zz", "a".repeat(62)),
            // base64 of 31 and 33 bytes
            &b64().encode([1u8; 31]),
            &b64().encode([1u8; 33]),
            "not base64 at all!",
        ];
        for text in bad {
            match Key::parse(text) {
                Err(e @ CryptoError::InvalidKey(_)) => {
                    if text.trim().len() > 3 {
                        assert!(!e.to_string().contains(text.trim()), "{e}");
                    }
                }
                r => panic!("{text:?}: expected InvalidKey, got {r:?}"),
            }
        }
    }

    #[test]
    fn debug_and_display_hide_secrets() {
        let k = key(0xcd);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&k.to_hex()));
        assert!(!dbg.to_lowercase().contains("cdcd"));
        assert!(dbg.contains(&k.id()));

        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(Secret::from("x").expose(), "x");
        assert!(Secret::default().is_empty());
    }

    #[test]
    fn load_key_prefers_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("k");
        let fk = key(1);
        std::fs::write(&file, fk.to_hex()).expect("write");
        let ek = key(2);

        let (k, src) = load_key(Some(&ek.to_hex()), Some(&file))
            .expect("ok")
            .expect("some");
        assert_eq!((k, src), (ek, KeySource::Env));

        // Blank env counts as unset.
        let (k, src) = load_key(Some("  "), Some(&file))
            .expect("ok")
            .expect("some");
        assert_eq!(k, fk);
        assert_eq!(src, KeySource::File(file.clone()));
        assert_eq!(src.to_string(), format!("key file {}", file.display()));

        assert!(load_key(None, None).expect("ok").is_none());
        assert!(load_key(Some(""), None).expect("ok").is_none());
    }

    #[test]
    fn load_key_errors_name_the_source() {
        match load_key(Some("nope"), None) {
            Err(
                e @ CryptoError::InvalidKeyIn {
                    origin: KeySource::Env,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("MYSQK_KEY"), "{e}");
                assert!(!e.to_string().contains("nope"), "{e}");
            }
            r => panic!("expected InvalidKeyIn, got {r:?}"),
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.key");
        match load_key(None, Some(&missing)) {
            Err(e @ CryptoError::KeyFileRead { .. }) => {
                assert!(e.to_string().contains("missing.key"), "{e}");
            }
            r => panic!("expected KeyFileRead, got {r:?}"),
        }
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "short\n").expect("write");
        match load_key(None, Some(&bad)) {
            Err(CryptoError::InvalidKeyIn {
                origin: KeySource::File(p),
                ..
            }) => assert_eq!(p, bad),
            r => panic!("expected InvalidKeyIn, got {r:?}"),
        }
    }

    #[test]
    fn key_file_permission_warning() {
        let p = Path::new("/etc/mysqk.key");
        assert_eq!(key_file_warning(p, 0o100600), None);
        assert_eq!(key_file_warning(p, 0o100400), None);
        let w = key_file_warning(p, 0o100644).expect("warns");
        assert!(
            w.contains("/etc/mysqk.key") && w.contains("chmod 600") && w.contains("0644"),
            "{w}"
        );
        assert!(!w.contains('\n'));
        assert!(key_file_warning(p, 0o100660).is_some());
        assert!(key_file_warning(p, 0o100602).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn loose_key_file_still_loads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("k");
        std::fs::write(&file, format!("{}\n", key(4).to_hex())).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (k, _) = load_key(None, Some(&file)).expect("ok").expect("some");
        assert_eq!(k, key(4));
    }
}
