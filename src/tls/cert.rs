//! Certificate facts (RFC 5280): the fields a person reads in a transcript or a dashboard, each
//! computed by one small pure function from the parsed certificate. Names are printed as
//! RFC 4514 strings, the way Go's `pkix.Name.String()` (and so blackbox_exporter) prints them.

use super::{CertFacts, CertSource};
use crate::printable::{shown, SHOWN_BYTES};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AttributeTypeAndValue, SubjectPublicKeyInfo, X509Name};

/// Parses a DER certificate, rejecting trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

impl CertFacts {
    /// The subjectAltNames joined by `separator`, bounded as one server text (a certificate
    /// may carry thousands).
    pub(crate) fn names(&self, separator: &str) -> String {
        shown(&self.sans.join(separator))
    }

    /// The subjectAltNames as a list of at most [`SHOWN_BYTES`] of names in all, then one entry
    /// saying how many there are (a certificate may carry thousands).
    pub(crate) fn names_listed(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for name in &self.sans {
            bytes += name.len();
            if bytes > SHOWN_BYTES {
                out.push(format!("… ({} names)", self.sans.len()));
                break;
            }
            out.push(name.clone());
        }
        out
    }

    /// The facts of `der`. Never fails: a certificate that does not parse keeps its fingerprint
    /// and DER, and its other facts stay empty (`subject` says why).
    pub(crate) fn from_der(
        der: &CertificateDer<'static>,
        depth: usize,
        sent: bool,
        source: CertSource,
    ) -> CertFacts {
        let fingerprint_sha256 = fingerprint_sha256(der);
        match parse(der) {
            Some(cert) => CertFacts {
                depth,
                // The names are the certificate author's text: printable and bounded before
                // any output sees them.
                subject: shown(&rfc4514(cert.subject())),
                issuer: shown(&rfc4514(cert.issuer())),
                subject_cn: shown(&common_name(cert.subject())),
                issuer_cn: shown(&common_name(cert.issuer())),
                serial: serial_hex(cert.raw_serial()),
                fingerprint_sha256,
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                sans: subject_alt_names(&cert).iter().map(|n| shown(n)).collect(),
                is_ca: cert.is_ca(),
                self_signed: is_self_signed(&cert),
                key: key_description(cert.public_key()),
                signature_algorithm: signature_algorithm_name(
                    &cert.signature_algorithm.algorithm.to_id_string(),
                ),
                sent,
                source,
                der: der.clone(),
            },
            None => CertFacts {
                depth,
                subject: "(unparsable certificate)".into(),
                issuer: String::new(),
                subject_cn: String::new(),
                issuer_cn: String::new(),
                serial: String::new(),
                fingerprint_sha256,
                not_before: 0,
                not_after: 0,
                sans: Vec::new(),
                is_ca: false,
                self_signed: false,
                key: String::new(),
                signature_algorithm: String::new(),
                sent,
                source,
                der: der.clone(),
            },
        }
    }
}

/// SHA-256 of the DER, lower-case hex.
pub(crate) fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The serial number as lower-case hex, every byte printed with two digits (leading zeros kept).
/// The one 0x00 byte DER puts in front of a serial whose high bit is set only says "positive"
/// and is dropped, as OpenSSL does; any other leading zero byte is part of what the CA wrote.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let bytes = match raw {
        [0, next, ..] if next & 0x80 != 0 => &raw[1..],
        _ => raw,
    };
    hex::encode(bytes)
}

/// Whether the issuer is the subject and the signature verifies with the certificate's own key.
/// A self-issued certificate signed by another key (a key rollover link) is not self-signed.
pub(crate) fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == cert.subject().as_raw() && cert.verify_signature(None).is_ok()
}

/// Whether `child` carries a signature that verifies with `issuer_key`.
pub(crate) fn signed_by(
    child: &X509Certificate<'_>,
    issuer_key: &SubjectPublicKeyInfo<'_>,
) -> bool {
    child.verify_signature(Some(issuer_key)).is_ok()
}

/// The first common name of a distinguished name, empty when none.
pub(crate) fn common_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .map(attribute_value_text)
        .unwrap_or_default()
}

/// The RFC 4514 string of a distinguished name: RDNs in reverse order of the encoding, separated
/// by `,`; multi-valued RDNs joined with `+`; types with a short name in RFC 4514 §3 by that
/// name, others by dotted OID with the value as `#` and the hex of its DER (§2.4).
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            match attribute_short_name(&oid) {
                Some(short) => {
                    out.push_str(short);
                    out.push('=');
                    match attribute_text(attr) {
                        Some(text) => escape_rfc4514(&text, &mut out),
                        None => push_hex_value(attr, &mut out),
                    }
                }
                None => {
                    out.push_str(&oid);
                    out.push('=');
                    push_hex_value(attr, &mut out);
                }
            }
        }
    }
    out
}

/// RFC 4514 §3 short names (plus SERIALNUMBER, which Go and OpenSSL also print by name).
fn attribute_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}

/// The value of a string attribute as text, decoding the legacy string types old roots use
/// (TeletexString as Latin-1, BMPString as UTF-16, UniversalString as UTF-32).
fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(s) = attr.as_str() {
        return Some(s.to_owned());
    }
    let value = attr.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::T61String | Tag::VisibleString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString if data.len() % 2 == 0 => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString if data.len() % 4 == 0 => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// An attribute value as text, or its hex form when it is not a string.
fn attribute_value_text(attr: &AttributeTypeAndValue<'_>) -> String {
    attribute_text(attr).unwrap_or_else(|| {
        let mut out = String::new();
        push_hex_value(attr, &mut out);
        out
    })
}

/// `#` followed by the hex of the value's DER (tag, length, contents), RFC 4514 §2.4.
fn push_hex_value(attr: &AttributeTypeAndValue<'_>, out: &mut String) {
    let value = attr.attr_value();
    out.push('#');
    let tag = value.tag().0;
    // Universal-class, primitive or constructed tags below 31 fit the one-byte form; anything
    // else is printed with its contents only, which still identifies the value.
    if tag < 31 {
        let constructed = if value.header.is_constructed() {
            0x20
        } else {
            0
        };
        let _ = write!(out, "{:02x}", tag as u8 | constructed);
        push_der_length(value.data.len(), out);
    }
    out.push_str(&hex::encode(value.data));
}

/// The DER length octets of `len`, in hex.
fn push_der_length(len: usize, out: &mut String) {
    if len < 0x80 {
        let _ = write!(out, "{len:02x}");
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let _ = write!(out, "{:02x}", 0x80 | (bytes.len() - skip));
        out.push_str(&hex::encode(&bytes[skip..]));
    }
}

/// Escapes an attribute value as RFC 4514 §2.4 asks.
fn escape_rfc4514(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

/// One subjectAltName entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AltName {
    /// A dNSName.
    Dns(String),
    /// An rfc822Name (an email address).
    Email(String),
    /// A uniformResourceIdentifier.
    Uri(String),
    /// An iPAddress.
    Ip(IpAddr),
    /// An iPAddress of neither 4 nor 16 bytes.
    MalformedIp(Vec<u8>),
}

/// Every subjectAltName entry of the kinds above, in certificate order: the one extractor of
/// the probe's certificate facts and the web server's `client_allowed_sans` check.
pub(crate) fn alt_names(cert: &X509Certificate<'_>) -> Vec<AltName> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) => Some(AltName::Dns((*s).to_owned())),
            GeneralName::RFC822Name(s) => Some(AltName::Email((*s).to_owned())),
            GeneralName::URI(s) => Some(AltName::Uri((*s).to_owned())),
            GeneralName::IPAddress(bytes) => Some(ip_name(bytes)),
            _ => None,
        })
        .collect()
}

/// [`alt_names`] of a DER certificate; none when it does not parse.
pub(crate) fn alt_names_of_der(der: &[u8]) -> Vec<AltName> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => alt_names(&cert),
        Err(_) => Vec::new(),
    }
}

/// DNS names and IP addresses from subjectAltName, in certificate order; a malformed address
/// as hex.
pub(crate) fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    alt_names(cert)
        .into_iter()
        .filter_map(|name| match name {
            AltName::Dns(dns) => Some(dns),
            AltName::Ip(ip) => Some(ip.to_string()),
            AltName::MalformedIp(bytes) => Some(hex::encode(bytes)),
            AltName::Email(_) | AltName::Uri(_) => None,
        })
        .collect()
}

/// An iPAddress SAN.
fn ip_name(bytes: &[u8]) -> AltName {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        AltName::Ip(Ipv4Addr::from(v4).into())
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        AltName::Ip(Ipv6Addr::from(v6).into())
    } else {
        AltName::MalformedIp(bytes.to_vec())
    }
}

/// Key type and size: `RSA 2048`, `ECDSA P-256`, `Ed25519`; the dotted OID when unknown.
pub(crate) fn key_description(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        "1.3.101.112" => return "Ed25519".into(),
        "1.3.101.113" => return "Ed448".into(),
        _ => {}
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", unsigned_bits(rsa.modulus)),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                Some("1.3.132.0.34") => "ECDSA P-384".into(),
                Some("1.3.132.0.35") => "ECDSA P-521".into(),
                Some(other) => format!("ECDSA {other}"),
                None => format!("ECDSA {}", point.key_size()),
            }
        }
        Ok(PublicKey::DSA(y)) => format!("DSA {}", unsigned_bits(y)),
        _ => algorithm,
    }
}

/// The bit length of a big-endian unsigned integer (leading zero bytes and bits not counted).
pub(crate) fn unsigned_bits(bytes: &[u8]) -> usize {
    let trimmed: &[u8] = match bytes.iter().position(|&b| b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

/// The name of a signature algorithm OID as OpenSSL and Go print it; the dotted OID otherwise.
pub(crate) fn signature_algorithm_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        other => return other.to_owned(),
    };
    name.to_owned()
}

/// The authority key identifier as lower-case hex, when the certificate has one.
pub(crate) fn authority_key_id(cert: &X509Certificate<'_>) -> Option<String> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| hex::encode(k.0))
            }
            _ => None,
        })
}

/// The subject key identifier (RFC 5280 §4.2.1.2), when the certificate has one.
pub(crate) fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        })
}

/// Whether `child`'s authority key identifier rules `issuer` out: both identifiers are present
/// and differ, so `issuer` holds another key than the one that signed `child` (a re-keyed CA, or
/// a namesake). RFC 5280 §4.2.1.1 gives the identifier for exactly this choice, and OpenSSL's
/// issuer lookup skips such a candidate too.
pub(crate) fn key_ids_differ(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let wanted = child
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    matches!((wanted, subject_key_id(issuer)), (Some(w), Some(have)) if w != have)
}

/// The caIssuers URLs of the authority information access extension (where the issuer's
/// certificate can be downloaded, RFC 5280 §4.2.2.1).
pub(crate) fn ca_issuers_urls(cert: &X509Certificate<'_>) -> Vec<String> {
    const CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";
    cert.iter_extensions()
        .filter_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(aia) => Some(aia),
            _ => None,
        })
        .flat_map(|aia| aia.iter())
        .filter(|desc| desc.access_method.to_id_string() == CA_ISSUERS)
        .filter_map(|desc| match desc.access_location {
            GeneralName::URI(uri) => Some(uri.to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_keeps_leading_zero_nibbles_and_drops_der_sign_byte() {
        assert_eq!(serial_hex(&[0x0a, 0x1b]), "0a1b");
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x00, 0x01]), "0001");
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        let mut modulus = vec![0u8];
        modulus.extend(std::iter::repeat_n(0xff, 256));
        assert_eq!(unsigned_bits(&modulus), 2048);
        assert_eq!(unsigned_bits(&[0x01, 0x00]), 9);
        assert_eq!(unsigned_bits(&[]), 0);
    }

    #[test]
    fn rfc4514_escapes_special_characters() {
        let mut out = String::new();
        escape_rfc4514("#a, b+c ", &mut out);
        assert_eq!(out, "\\#a\\, b\\+c\\ ");
    }

    #[test]
    fn names_of_signature_algorithms() {
        assert_eq!(
            signature_algorithm_name("1.2.840.113549.1.1.11"),
            "sha256WithRSAEncryption"
        );
        assert_eq!(signature_algorithm_name("1.2.3.4"), "1.2.3.4");
    }

    #[test]
    fn facts_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["mail.example.test".into(), "192.0.2.7".into()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mail.example.test");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2025, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let facts = CertFacts::from_der(cert.der(), 0, true, CertSource::Server);
        assert_eq!(facts.subject, "CN=mail.example.test,O=Example\\, Inc.");
        assert_eq!(facts.subject, facts.issuer);
        assert_eq!(facts.subject_cn, "mail.example.test");
        assert_eq!(facts.serial, "0abc");
        assert_eq!(facts.not_before, 1_704_067_200);
        assert_eq!(facts.not_after, 1_735_689_600);
        assert_eq!(facts.sans, vec!["mail.example.test", "192.0.2.7"]);
        assert!(facts.self_signed);
        assert!(!facts.is_ca);
        assert_eq!(facts.key, "ECDSA P-256");
        assert_eq!(facts.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(facts.fingerprint_sha256, fingerprint_sha256(cert.der()));
        assert_eq!(facts.fingerprint_sha256.len(), 64);
    }

    #[test]
    fn unparsable_certificate_keeps_its_fingerprint() {
        let der = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let facts = CertFacts::from_der(&der, 1, true, CertSource::Server);
        assert_eq!(facts.fingerprint_sha256, fingerprint_sha256(&der));
        assert_eq!(facts.not_after, 0);
        assert_eq!(facts.depth, 1);
    }
}
