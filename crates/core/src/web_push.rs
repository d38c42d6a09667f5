//! `PushSender` for Web Push, the same on both runtimes: the message encrypted to the browser
//! (RFC 8291, `aes128gcm` of RFC 8188), the sender identified to the push service with VAPID
//! (RFC 8292), delivered by an HTTP POST (RFC 8030).

use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use crate::domain::push::{PushMessage, PushSubscription, PushTarget, web_push_keys};
use crate::domain::webhook::{ip_literal, is_internal};
use crate::ports::{PushError, PushSender, SendError, error_chain};

/// The record size written in the header: the whole message is one record.
const RECORD_SIZE: u32 = 4096;
/// The most a push service must take (RFC 8030 says 4096 bytes of payload).
pub const MAX_PAYLOAD: usize = 3993;
/// How long a push service keeps a message for a browser that is offline.
const TTL_SECONDS: u32 = 24 * 3600;

/// The deployment's VAPID key: an ECDSA P-256 key pair, kept as PKCS#8.
pub struct VapidKey {
    pair: EcdsaKeyPair,
}

impl VapidKey {
    /// A new key, as PKCS#8 base64url (what is saved, and what `from_pkcs8` reads).
    pub fn generate() -> String {
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("the system has randomness");
        URL_SAFE_NO_PAD.encode(document.as_ref())
    }

    pub fn from_pkcs8(encoded: &str) -> Result<Self, String> {
        let der = URL_SAFE_NO_PAD
            .decode(encoded.trim())
            .map_err(|e| format!("the VAPID key is not base64url: {e}"))?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map(|pair| Self { pair })
            .map_err(|e| format!("the VAPID key is not a P-256 PKCS#8 key: {e}"))
    }

    /// The public key, uncompressed, base64url: a browser's `applicationServerKey`.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// `Authorization: vapid t=<JWT>, k=<public key>` for `endpoint` (RFC 8292): the JWT's
    /// audience is the push service's origin, signed ES256.
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now: Timestamp,
    ) -> Result<String, String> {
        let url = url::Url::parse(endpoint).map_err(|e| e.to_string())?;
        let audience = url.origin().ascii_serialization();
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"aud": audience, "exp": now.as_second() + 12 * 3600, "sub": subject})
                .to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "could not sign the VAPID token".to_owned())?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            self.public_key()
        ))
    }
}

/// A length for HKDF output.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 gives up to 8160 bytes");
    out
}

/// `plaintext` encrypted to a browser (RFC 8291): its public key `ua_public` (65 bytes) and
/// authentication secret `auth` (16 bytes). One record of `aes128gcm`, the header carrying the
/// salt and our one-time public key.
pub fn encrypt(ua_public: &[u8], auth: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    if plaintext.len() > MAX_PAYLOAD {
        return Err(format!(
            "the push is {} bytes; at most {MAX_PAYLOAD} fit",
            plaintext.len()
        ));
    }
    let rng = SystemRandom::new();
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| "no key")?;
    let as_public = ephemeral
        .compute_public_key()
        .map_err(|_| "no public key")?;
    let as_public = as_public.as_ref().to_vec();
    let ikm = agree_ephemeral(
        ephemeral,
        UnparsedPublicKey::new(&ECDH_P256, ua_public),
        "the browser's key is not a P-256 point".to_owned(),
        |ecdh_secret| {
            Ok(hkdf(
                auth,
                ecdh_secret,
                &[b"WebPush: info\0", ua_public, &as_public],
                32,
            ))
        },
    )?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| "no randomness")?;
    let cek = hkdf(&salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], 16);
    let nonce = hkdf(&salt, &ikm, &[b"Content-Encoding: nonce\0"], 12);
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| "bad key")?);
    // The last (and only) record ends with the delimiter 2 and no padding.
    let mut record = plaintext.to_vec();
    record.push(2);
    key.seal_in_place_append_tag(
        Nonce::try_assume_unique_for_key(&nonce).map_err(|_| "bad nonce")?,
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| "could not encrypt")?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

pub struct WebPushSender {
    client: reqwest::Client,
    key: VapidKey,
    /// Who to contact about our pushes (`mailto:` or `https:`), in every VAPID token.
    subject: String,
    allow_internal: bool,
}

impl WebPushSender {
    /// Unless `allow_internal`, it connects only to public addresses (a subscription's endpoint
    /// comes from a browser, which could name anything).
    pub fn new(key: VapidKey, subject: &str, allow_internal: bool) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: crate::webhook_http::outbound_client(allow_internal, Duration::from_secs(10))?,
            key,
            subject: subject.to_owned(),
            allow_internal,
        })
    }

    pub fn public_key(&self) -> String {
        self.key.public_key()
    }
}

#[async_trait]
impl PushSender for WebPushSender {
    async fn send(
        &self,
        subscription: &PushSubscription,
        message: &PushMessage,
    ) -> Result<String, PushError> {
        let failed = |e: SendError| PushError::Failed(e);
        let PushTarget::WebPush {
            endpoint,
            p256dh,
            auth,
        } = &subscription.target
        else {
            return Err(failed(SendError::permanent("not a Web Push subscription")));
        };
        if !self.allow_internal
            && url::Url::parse(endpoint)
                .ok()
                .and_then(|u| ip_literal(&u))
                .is_some_and(is_internal)
        {
            return Err(PushError::Gone);
        }
        let (ua_public, auth) = web_push_keys(p256dh, auth);
        let payload = serde_json::to_vec(message).expect("a message serializes");
        let body =
            encrypt(&ua_public, &auth, &payload).map_err(|e| failed(SendError::permanent(e)))?;
        let authorization = self
            .key
            .authorization(endpoint, &self.subject, Timestamp::now())
            .map_err(|e| failed(SendError::permanent(e)))?;
        let response = self
            .client
            .post(endpoint)
            .header("authorization", authorization)
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", TTL_SECONDS.to_string())
            .header("urgency", "normal")
            .body(body)
            .send()
            .await
            .map_err(|e| failed(SendError::transient(error_chain(&e.without_url()))))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        match status {
            200..=299 => Ok(location),
            404 | 410 => Err(PushError::Gone),
            429 => Err(failed(SendError::throttled(format!(
                "the push service answered {status}"
            )))),
            500..=599 => Err(failed(SendError::transient(format!(
                "the push service answered {status}"
            )))),
            // 400, 401, 403 (VAPID refused), 413: sending again would not help.
            _ => Err(failed(SendError::permanent(format!(
                "the push service answered {status}"
            )))),
        }
    }
}
