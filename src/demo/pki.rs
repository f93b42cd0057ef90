//! A throw-away PKI for the demo server: a root CA, an intermediate CA and a leaf certificate,
//! generated in memory at start (RFC 5280 profiles: CA basic constraints and key usages, leaf
//! with `serverAuth` and subject alternative names).
//!
//! Tests of chain verdicts need broken chains too, so [`PkiOptions`] can make an expired or
//! not-yet-valid leaf, an expired intermediate, a leaf for other names, or a self-signed leaf;
//! [`Sent`] chooses which certificates the server sends (leaf only, the full chain, with the root,
//! or any list).
//!
//! Keys are ECDSA P-256 by default, P-384 or Ed25519 on request. RSA is not offered: rcgen can
//! generate RSA keys only with its aws-lc-rs backend, and this crate uses ring.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// One day, the unit of certificate lifetimes.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The key algorithm of all three certificates.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256: the default, the fastest handshake.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// What to generate. [`PkiOptions::new`] gives a healthy PKI; change fields to break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiOptions {
    /// Key algorithm of the root, the intermediate and the leaf.
    pub key: KeyKind,
    /// The leaf's subject alternative names: DNS names, or IP addresses written as text.
    /// The first one is also the leaf's common name.
    pub leaf_names: Vec<String>,
    /// Start of the leaf's validity.
    pub leaf_not_before: SystemTime,
    /// End of the leaf's validity.
    pub leaf_not_after: SystemTime,
    /// End of the intermediate's validity.
    pub intermediate_not_after: SystemTime,
    /// Sign the leaf with its own key instead of the intermediate's.
    pub self_signed_leaf: bool,
}

impl PkiOptions {
    /// A healthy PKI whose leaf names `hostnames`, `localhost`, 127.0.0.1 and ::1; the leaf is
    /// valid from yesterday for a year, the intermediate for five years.
    pub fn new(hostnames: &[&str]) -> PkiOptions {
        let mut leaf_names: Vec<String> = hostnames.iter().map(|h| h.to_string()).collect();
        for extra in ["localhost", "127.0.0.1", "::1"] {
            if !leaf_names.iter().any(|n| n == extra) {
                leaf_names.push(extra.to_string());
            }
        }
        let now = SystemTime::now();
        PkiOptions {
            key: KeyKind::default(),
            leaf_names,
            leaf_not_before: now - DAY,
            leaf_not_after: now + 365 * DAY,
            intermediate_not_after: now + 5 * 365 * DAY,
            self_signed_leaf: false,
        }
    }
}

/// Why a PKI could not be generated: a name rcgen cannot encode, or a key it cannot make.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate the demo PKI: {0}")]
pub struct PkiError(#[from] rcgen::Error);

/// A certificate in both encodings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    /// DER, as sent in a TLS handshake.
    pub der: CertificateDer<'static>,
    /// PEM (`-----BEGIN CERTIFICATE-----`), as written to a CA file.
    pub pem: String,
}

/// Which certificates the server sends in its handshake.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Sent {
    /// Leaf and intermediate: what a correctly configured server sends.
    #[default]
    Full,
    /// The leaf alone: an incomplete chain when the client lacks the intermediate.
    LeafOnly,
    /// Leaf, intermediate and root.
    WithRoot,
    /// Exactly these certificates, in this order (wrong order, foreign certificates, …). The
    /// server still signs with the leaf key, so the first one should be the leaf.
    Custom(Vec<CertificateDer<'static>>),
}

/// A generated root CA, intermediate CA and leaf, with the leaf's private key.
#[derive(Clone, PartialEq, Eq)]
pub struct DemoPki {
    /// The self-signed root: the trust anchor a client must be given.
    pub root: IssuedCert,
    /// The intermediate CA, signed by the root.
    pub intermediate: IssuedCert,
    /// The server certificate, signed by the intermediate (or by itself, see
    /// [`PkiOptions::self_signed_leaf`]).
    pub leaf: IssuedCert,
    /// The leaf's private key, PKCS #8 DER.
    leaf_key_pkcs8: Vec<u8>,
    /// The leaf's private key, PKCS #8 PEM.
    leaf_key_pem: String,
    /// What it was made from.
    options: PkiOptions,
}

impl fmt::Debug for DemoPki {
    // The leaf key stays out of debug output, like any other secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoPki")
            .field("options", &self.options)
            .field("leaf_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl DemoPki {
    /// A healthy PKI whose leaf is valid for `hostnames`, `localhost`, 127.0.0.1 and ::1.
    pub fn generate(hostnames: &[&str]) -> Result<DemoPki, PkiError> {
        DemoPki::with_options(&PkiOptions::new(hostnames))
    }

    /// The healthy `localhost` PKI, generated once per process and shared: what
    /// [`ServerConfig::default`](crate::demo::ServerConfig) serves.
    pub fn localhost() -> Arc<DemoPki> {
        static LOCALHOST: OnceLock<Arc<DemoPki>> = OnceLock::new();
        LOCALHOST
            .get_or_init(|| {
                // Fixed, valid names and a key ring always generates: this cannot fail short
                // of a broken system random source, where nothing else would work either.
                Arc::new(DemoPki::generate(&[]).expect("generating the localhost demo PKI"))
            })
            .clone()
    }

    /// A PKI as `options` describe it.
    pub fn with_options(options: &PkiOptions) -> Result<DemoPki, PkiError> {
        let alg = options.key.algorithm();
        let now = SystemTime::now();

        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = name("smtp-prober demo root CA");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        root_params.not_before = (now - DAY).into();
        root_params.not_after = (now + 10 * 365 * DAY).into();
        let root = CertifiedIssuer::self_signed(root_params, KeyPair::generate_for(alg)?)?;

        let mut inter_params = CertificateParams::default();
        inter_params.distinguished_name = name("smtp-prober demo intermediate CA");
        // Path length 0: the intermediate may sign leaves only.
        inter_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // The authority key identifier lets clients and `chain` export find the issuer.
        inter_params.use_authority_key_identifier_extension = true;
        inter_params.not_before = (now - DAY).into();
        inter_params.not_after = options.intermediate_not_after.into();
        let intermediate =
            CertifiedIssuer::signed_by(inter_params, KeyPair::generate_for(alg)?, &root)?;

        let mut leaf_params = CertificateParams::new(options.leaf_names.clone())?;
        let common_name = options
            .leaf_names
            .first()
            .map(String::as_str)
            .unwrap_or("smtp-prober demo server");
        leaf_params.distinguished_name = name(common_name);
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.not_before = options.leaf_not_before.into();
        leaf_params.not_after = options.leaf_not_after.into();
        let leaf_key = KeyPair::generate_for(alg)?;
        let leaf = if options.self_signed_leaf {
            leaf_params.self_signed(&leaf_key)?
        } else {
            leaf_params.use_authority_key_identifier_extension = true;
            leaf_params.signed_by(&leaf_key, &intermediate)?
        };

        Ok(DemoPki {
            root: IssuedCert {
                der: root.der().clone(),
                pem: root.pem(),
            },
            intermediate: IssuedCert {
                der: intermediate.der().clone(),
                pem: intermediate.pem(),
            },
            leaf: IssuedCert {
                der: leaf.der().clone(),
                pem: leaf.pem(),
            },
            leaf_key_pkcs8: leaf_key.serialize_der(),
            leaf_key_pem: leaf_key.serialize_pem(),
            options: options.clone(),
        })
    }

    /// The root certificate as PEM, for writing a test's `ca_file`.
    pub fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// The intermediate certificate as PEM (a client-side fix for a leaf-only server).
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate.pem
    }

    /// The leaf's private key (PKCS #8), for a TLS server.
    pub fn leaf_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_pkcs8.clone()))
    }

    /// The leaf's private key as PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn leaf_key_pem(&self) -> &str {
        &self.leaf_key_pem
    }

    /// What this PKI was generated from.
    pub fn options(&self) -> &PkiOptions {
        &self.options
    }

    /// The certificates a server sends for `sent`, leaf first.
    pub fn chain(&self, sent: &Sent) -> Vec<CertificateDer<'static>> {
        match sent {
            Sent::Full => vec![self.leaf.der.clone(), self.intermediate.der.clone()],
            Sent::LeafOnly => vec![self.leaf.der.clone()],
            Sent::WithRoot => vec![
                self.leaf.der.clone(),
                self.intermediate.der.clone(),
                self.root.der.clone(),
            ],
            Sent::Custom(certs) => certs.clone(),
        }
    }

    /// A rustls root store holding this PKI's root only: what a test client trusts.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut store = rustls::RootCertStore::empty();
        // A certificate we generated ourselves always parses; a failure would leave the store
        // empty and every handshake in the test would say so.
        let _ = store.add(self.root.der.clone());
        store
    }
}

/// A distinguished name with just a common name and the project as organization.
fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "smtp-prober demo");
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    fn parse<'a>(der: &'a CertificateDer<'_>) -> X509Certificate<'a> {
        X509Certificate::from_der(der.as_ref()).expect("parses").1
    }

    #[test]
    fn healthy_chain_links_leaf_to_root() {
        let pki = DemoPki::generate(&["mx.demo.test"]).expect("generates");
        let (root, inter, leaf) = (
            parse(&pki.root.der),
            parse(&pki.intermediate.der),
            parse(&pki.leaf.der),
        );
        assert_eq!(root.subject(), root.issuer());
        assert_eq!(inter.issuer(), root.subject());
        assert_eq!(leaf.issuer(), inter.subject());
        assert!(root.is_ca() && inter.is_ca() && !leaf.is_ca());
        assert!(leaf.verify_signature(Some(inter.public_key())).is_ok());
        assert!(inter.verify_signature(Some(root.public_key())).is_ok());

        let sans = leaf
            .subject_alternative_name()
            .expect("valid extension")
            .expect("present");
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["mx.demo.test", "localhost", "ip:4", "ip:16"]);
        assert!(pki.root_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki
            .leaf_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{pki:?}").contains("PRIVATE"));
    }

    #[test]
    fn chain_selection_orders_leaf_first() {
        let pki = DemoPki::localhost();
        assert_eq!(pki.chain(&Sent::LeafOnly), vec![pki.leaf.der.clone()]);
        assert_eq!(pki.chain(&Sent::Full).len(), 2);
        let with_root = pki.chain(&Sent::WithRoot);
        assert_eq!(with_root[2], pki.root.der);
        let custom = Sent::Custom(vec![pki.intermediate.der.clone(), pki.leaf.der.clone()]);
        assert_eq!(pki.chain(&custom)[0], pki.intermediate.der);
    }

    #[test]
    fn options_break_the_chain_as_asked() {
        let now = SystemTime::now();
        let mut options = PkiOptions::new(&[]);
        options.key = KeyKind::EcdsaP384;
        options.leaf_names = vec!["other.example".into()];
        options.leaf_not_after = now - DAY;
        options.intermediate_not_after = now - 2 * DAY;
        options.self_signed_leaf = true;
        let pki = DemoPki::with_options(&options).expect("generates");
        let leaf = parse(&pki.leaf.der);
        assert_eq!(leaf.subject(), leaf.issuer());
        assert!(leaf.verify_signature(None).is_ok());
        assert!(
            leaf.validity().not_after.timestamp()
                < time::OffsetDateTime::now_utc().unix_timestamp()
        );
        let inter = parse(&pki.intermediate.der);
        assert!(inter.validity().not_after < leaf.validity().not_after);
        assert_eq!(
            leaf.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA384
        );
    }

    #[test]
    fn ed25519_generates() {
        let mut options = PkiOptions::new(&[]);
        options.key = KeyKind::Ed25519;
        let pki = DemoPki::with_options(&options).expect("generates");
        assert_eq!(
            parse(&pki.leaf.der).signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ED25519
        );
    }
}
