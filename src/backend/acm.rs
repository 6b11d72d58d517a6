//! ACM certificates as the backend hands them to the cache: ExportCertificate's certificate and
//! chain, and its private key decrypted, in one JSON body from which `awsacm:<arn>#<part>`
//! references take their part.
//!
//! ExportCertificate encrypts the key (PKCS#8, PBES2) under a passphrase the caller chooses:
//! the agent makes a random one per call and decrypts the answer at once, so the passphrase
//! never leaves the call and the key is never written encrypted.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The parts a reference can take.
pub const PARTS: [&str; 4] = ["certificate", "chain", "fullchain", "private_key"];

/// The body cached for a certificate. Field names follow ExportCertificate's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateBody {
    pub certificate_arn: String,
    pub serial: Option<String>,
    pub certificate: String,
    pub certificate_chain: String,
    /// Unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub private_key: String,
}

impl CertificateBody {
    /// The JSON the cache holds.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// One part as file content: each PEM ends with a newline, `fullchain` is the certificate
    /// followed by the chain (what nginx and HAProxy take).
    pub fn part(&self, part: &str) -> Option<String> {
        let pem = |s: &str| {
            let mut s = s.trim().to_string();
            if !s.is_empty() {
                s.push('\n');
            }
            s
        };
        match part {
            "certificate" => Some(pem(&self.certificate)),
            "chain" => Some(pem(&self.certificate_chain)),
            "fullchain" => Some(pem(&self.certificate) + &pem(&self.certificate_chain)),
            "private_key" => Some(pem(&self.private_key)),
            _ => None,
        }
    }
}

/// A random passphrase for one export: 32 bytes from the OS as hex (ACM takes any ASCII but
/// `#`, `$` and `%`).
pub fn passphrase() -> Result<String, String> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness for the passphrase: {e}"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// The key ExportCertificate encrypted under `passphrase`, as unencrypted PKCS#8 PEM.
pub fn decrypt_private_key(encrypted_pem: &str, passphrase: &str) -> Result<String, String> {
    use pkcs8::der::pem::LineEnding;
    use pkcs8::DecodePrivateKey;
    let key = pkcs8::SecretDocument::from_pkcs8_encrypted_pem(encrypted_pem.trim(), passphrase)
        .map_err(|e| format!("the exported private key could not be decrypted: {e}"))?;
    key.to_pem("PRIVATE KEY", LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("the decrypted private key could not be encoded: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RSA key encrypted by Python's `cryptography` (BestAvailableEncryption: PBES2,
    /// PBKDF2-HMAC-SHA256, AES-256-CBC), as moto's ExportCertificate does, under "pass1234".
    const ENCRYPTED: &str = include_str!("../../tests/support/encrypted_key.pem");

    #[test]
    fn decrypts_pbes2_and_refuses_a_wrong_passphrase() {
        let pem = decrypt_private_key(ENCRYPTED, "pass1234").unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            &pem[..40]
        );
        assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
        let e = decrypt_private_key(ENCRYPTED, "wrong").unwrap_err();
        assert!(e.contains("could not be decrypted"), "{e}");
        assert!(!e.contains("BEGIN"), "{e}");
    }

    #[test]
    fn passphrases_are_random_ascii() {
        let (a, b) = (passphrase().unwrap(), passphrase().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn parts_end_with_a_newline_and_fullchain_joins() {
        let body = CertificateBody {
            certificate_arn: "arn".into(),
            serial: None,
            certificate: "CERT".into(),
            certificate_chain: "CHAIN\n".into(),
            private_key: "KEY".into(),
        };
        assert_eq!(body.part("certificate").unwrap(), "CERT\n");
        assert_eq!(body.part("fullchain").unwrap(), "CERT\nCHAIN\n");
        assert_eq!(body.part("private_key").unwrap(), "KEY\n");
        assert!(body.part("key").is_none());
    }
}
