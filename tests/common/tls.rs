//! A certificate authority made by the test, and what it signs: redis-server's certificate
//! (for 127.0.0.1 and localhost) and client certificates, as PEM files in a temporary folder
//! that redis-server reads.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct TestCa {
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new authority named `name`, and the server's certificate, written to a folder of its own.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "socketio-stack-tls-{}-{}",
            std::process::id(),
            super::redis_server::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Self { dir, issuer };
        let (cert, key) = ca.sign(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        ca.write("ca.pem", &ca.issuer.pem());
        ca.write("server.pem", &cert);
        ca.write("server-key.pem", &key);
        ca
    }

    /// The authority's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate and its private key, PEM.
    pub fn client_certificate(&self) -> (String, String) {
        self.sign(&[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// The path of one of the files written.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    fn sign(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, file: &str, pem: &str) {
        std::fs::write(self.dir.join(file), pem).unwrap();
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
