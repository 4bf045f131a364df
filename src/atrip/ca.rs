//! The certificates ATRIP's TLS is checked against: the client's built-in roots (webpki's),
//! plus the PEM bundle of `atrip.ca_file` when one is set, for an egress proxy that inspects
//! TLS with a company CA. Nothing else is read: `SSL_CERT_FILE` and the system store are not.

use crate::config::ConfigError;

/// The most `atrip.ca_file` may hold. Mozilla's whole root bundle is about 220 KB; a file
/// past this is not a CA bundle (a log, a disk image named by mistake), and is read no further.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The certificates of `atrip.ca_file`, each one checked to be usable as a trust anchor.
pub struct CaBundle {
    pub(super) certs: Vec<reqwest::Certificate>,
    path: String,
}

impl CaBundle {
    /// Reads and checks the bundle at `path`. Every way it cannot be used (missing, unreadable,
    /// too large, empty, not PEM, a certificate that does not parse) is one error naming the
    /// setting, the path and what is wrong: the worker must not start without the CA its
    /// operator meant it to trust, and must not panic on a bad file.
    pub fn load(path: &str) -> Result<CaBundle, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "atrip.ca_file",
            problem,
        };
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => invalid(format!("{path} does not exist")),
            _ => invalid(format!("{path} cannot be read: {e}")),
        })?;
        let pem = crate::input::read_at_most(file, MAX_CA_FILE_BYTES)
            .map_err(|e| invalid(format!("{path} cannot be read: {e}")))?
            .ok_or_else(|| {
                invalid(format!(
                    "{path} is larger than {MAX_CA_FILE_BYTES} bytes (1 MiB), too large for a CA bundle; not read further"
                ))
            })?;
        if pem.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid(format!(
                "{path} is empty; it must hold PEM certificates (-----BEGIN CERTIFICATE-----)"
            )));
        }
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
            invalid(format!(
                "{path} is not a PEM bundle: a certificate's base64 is broken"
            ))
        })?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); DER files and keys are not read"
            )));
        }
        // The PEM parser only undoes base64; whether each one is a certificate is known when
        // it is added to a root store, which is what building a client does.
        for (i, cert) in certs.iter().enumerate() {
            reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert.clone())
                .build()
                .map_err(|e| {
                    // rustls says "invalid peer certificate: BadEncoding"; no peer is
                    // involved here.
                    let cause = std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), ToString::to_string);
                    let cause = cause.trim_start_matches("invalid peer certificate: ");
                    invalid(format!(
                        "{path}: certificate {} of {} is not a usable CA certificate ({cause})",
                        i + 1,
                        certs.len()
                    ))
                })?;
        }
        Ok(CaBundle {
            certs,
            path: path.to_owned(),
        })
    }

    /// What the client trusts, in words for the start line.
    pub fn describe(bundle: Option<&CaBundle>) -> String {
        match bundle {
            Some(b) => format!(
                "trusting the built-in roots and {} certificate{} from {} (atrip.ca_file)",
                b.certs.len(),
                if b.certs.len() == 1 { "" } else { "s" },
                b.path
            ),
            // The variable a TLS-inspecting environment usually sets does nothing here: say
            // so, rather than let a handshake failure be the first sign.
            None if std::env::var_os("SSL_CERT_FILE").is_some() => {
                "trusting the built-in roots only (SSL_CERT_FILE is set but not read: atrip.ca_file adds a CA bundle)".to_owned()
            }
            None => "trusting the built-in roots only".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "tt-ca-{}-{:016x}-{name}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn refused(path: &str) -> String {
        match CaBundle::load(path) {
            Ok(_) => panic!("{path} was taken"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_bundle_that_cannot_be_used_is_refused_naming_the_setting_the_path_and_the_problem() {
        let missing = std::env::temp_dir().join("tt-ca-no-such-file.pem");
        let e = refused(missing.to_str().unwrap());
        assert!(
            e.contains("atrip.ca_file")
                && e.contains(missing.to_str().unwrap())
                && e.contains("does not exist"),
            "{e}"
        );

        let dir = std::env::temp_dir();
        let e = refused(dir.to_str().unwrap());
        assert!(e.contains("cannot be read"), "{e}");

        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("empty", Vec::new(), "is empty"),
            ("blank", b"\n  \n".to_vec(), "is empty"),
            (
                "words",
                b"this is not a certificate\n".to_vec(),
                "holds no PEM certificate",
            ),
            (
                "base64",
                b"-----BEGIN CERTIFICATE-----\n!!!!not base64!!!!\n-----END CERTIFICATE-----\n"
                    .to_vec(),
                "not a PEM bundle",
            ),
            (
                "der",
                b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
                    .to_vec(),
                "certificate 1 of 1 is not a usable CA certificate",
            ),
        ];
        for (name, bytes, says) in cases {
            let path = file(name, &bytes);
            let e = refused(path.to_str().unwrap());
            assert!(
                e.starts_with("configuration key atrip.ca_file: ")
                    && e.contains(path.to_str().unwrap())
                    && e.contains(says)
                    && !e.contains('\n'),
                "{name}: {e}"
            );
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn a_file_past_the_bound_is_refused_without_being_read_whole() {
        // Sparse: a gigabyte on no disk, which a reader without a bound would hold in memory.
        let path = file("huge", b"");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let started = std::time::Instant::now();
        let e = refused(path.to_str().unwrap());
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        std::fs::remove_file(path).unwrap();
    }
}
