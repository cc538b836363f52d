//! The local webhook's serving certificate, laid out as the kubelet lays out a mounted Secret:
//! `tls.crt` and `tls.key` are symlinks into `..data`, itself a symlink to a timestamped
//! directory. Rotation writes a new directory and swaps `..data` with one atomic rename, which
//! is what the webhook's certificate reloader must see through.

use std::path::{Path, PathBuf};

/// A CA and the serving certificate it signed, for `127.0.0.1` and `localhost`.
pub struct ServingCerts {
    dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    generation: u32,
}

impl ServingCerts {
    /// Creates the CA and the first serving certificate in `dir`.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "custody e2e CA");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        let mut certs = Self {
            dir: dir.to_path_buf(),
            ca,
            generation: 0,
        };
        certs.rotate()?;
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))?;
        }
        Ok(certs)
    }

    /// The certificate path the webhook is given.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    /// The key path the webhook is given.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// The CA certificate, PEM: the caBundle.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Issues a new serving certificate and swaps it in atomically; returns its PEM.
    pub fn rotate(&mut self) -> anyhow::Result<String> {
        self.generation += 1;
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("custody e2e webhook {}", self.generation),
        );
        let cert = params.signed_by(&key, &self.ca)?;
        let version = format!("..v{}", self.generation);
        let version_dir = self.dir.join(&version);
        std::fs::create_dir_all(&version_dir)?;
        std::fs::write(version_dir.join("tls.crt"), cert.pem())?;
        std::fs::write(version_dir.join("tls.key"), key.serialize_pem())?;
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp)?;
        std::fs::rename(&tmp, self.dir.join("..data"))?;
        if self.generation > 1 {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("..v{}", self.generation - 1)));
        }
        Ok(cert.pem())
    }
}
