//! The OCSP response a server staples to its handshake (RFC 6066 §8 `status_request`, RFC 6960
//! §4.2): whether one was stapled, the responder's status, the leaf's certificate status and the
//! update times, the facts `openssl s_client -status` prints. The response is read, not trusted:
//! its signature is not verified, so it informs (a stale or `revoked` staple is worth an alert)
//! but never makes a chain valid or invalid.

use der::Decode;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus};

/// The leaf's status in a stapled response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspCertStatus {
    /// The responder vouches for the certificate.
    Good,
    /// The certificate is revoked.
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
}

impl OcspCertStatus {
    /// The label value (RFC 6960 names).
    pub fn as_str(self) -> &'static str {
        match self {
            OcspCertStatus::Good => "good",
            OcspCertStatus::Revoked => "revoked",
            OcspCertStatus::Unknown => "unknown",
        }
    }
}

/// What a stapled OCSP response says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspStaple {
    /// The responder's status (RFC 6960 `OCSPResponseStatus`): `successful`, `tryLater`, ...;
    /// empty when the response does not parse.
    pub response_status: &'static str,
    /// The leaf's status, when the response has an entry for its serial number.
    pub cert_status: Option<OcspCertStatus>,
    /// When the responder signed the response, Unix seconds.
    pub produced_at: Option<i64>,
    /// The start of the entry's validity, Unix seconds.
    pub this_update: Option<i64>,
    /// When newer information will be available (the staple is stale after it), Unix seconds.
    pub next_update: Option<i64>,
    /// When the leaf was revoked, Unix seconds.
    pub revoked_at: Option<i64>,
    /// Why the response could not be read completely, in words.
    pub problem: Option<String>,
}

impl OcspStaple {
    /// Reads a stapled response for the leaf with serial number `leaf_serial` (the DER INTEGER
    /// content bytes). Never fails: what cannot be read is named in `problem`.
    pub(crate) fn parse(der: &[u8], leaf_serial: &[u8]) -> OcspStaple {
        let mut staple = OcspStaple {
            response_status: "",
            cert_status: None,
            produced_at: None,
            this_update: None,
            next_update: None,
            revoked_at: None,
            problem: None,
        };
        let response = match OcspResponse::from_der(der) {
            Ok(r) => r,
            Err(e) => {
                staple.problem = Some(format!("the stapled OCSP response does not parse: {e}"));
                return staple;
            }
        };
        staple.response_status = response_status_name(response.response_status);
        let Some(bytes) = response.response_bytes else {
            if response.response_status == OcspResponseStatus::Successful {
                staple.problem = Some("a successful OCSP response without a body".into());
            }
            return staple;
        };
        let basic = match BasicOcspResponse::from_der(bytes.response.as_bytes()) {
            Ok(b) => b,
            Err(e) => {
                staple.problem = Some(format!("the OCSP response body does not parse: {e}"));
                return staple;
            }
        };
        let data = basic.tbs_response_data;
        staple.produced_at = Some(unix(&data.produced_at.0));
        let wanted = trim_sign_byte(leaf_serial);
        let Some(single) = data
            .responses
            .iter()
            .find(|r| trim_sign_byte(r.cert_id.serial_number.as_bytes()) == wanted)
        else {
            staple.problem = Some(format!(
                "the OCSP response has {} entr{} and none for the leaf's serial number",
                data.responses.len(),
                if data.responses.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ));
            return staple;
        };
        staple.this_update = Some(unix(&single.this_update.0));
        staple.next_update = single.next_update.map(|t| unix(&t.0));
        staple.cert_status = Some(match single.cert_status {
            CertStatus::Good(_) => OcspCertStatus::Good,
            CertStatus::Revoked(info) => {
                staple.revoked_at = Some(unix(&info.revocation_time.0));
                OcspCertStatus::Revoked
            }
            CertStatus::Unknown(_) => OcspCertStatus::Unknown,
        });
        staple
    }
}

/// RFC 6960's name of a response status.
fn response_status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

fn unix(t: &der::asn1::GeneralizedTime) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// A DER INTEGER's content without the leading zero that keeps it positive.
fn trim_sign_byte(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::ocsp::{response, REVOKED_BEFORE};
    use der::Encode;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn good_revoked_and_unknown_entries() {
        let t = 1_748_736_000;
        let good = OcspStaple::parse(
            &response(&[0x01, 0x23], OcspCertStatus::Good, at(t)),
            &[1, 0x23],
        );
        assert_eq!(good.response_status, "successful");
        assert_eq!(good.cert_status, Some(OcspCertStatus::Good));
        assert_eq!(good.this_update, Some(t as i64));
        assert_eq!(good.next_update, Some(t as i64 + 86_400));
        assert_eq!(good.problem, None);

        // A leading zero byte in one serial and not the other is the same number.
        let revoked = response(&[0x7f], OcspCertStatus::Revoked, at(t));
        let r = OcspStaple::parse(&revoked, &[0x00, 0x7f]);
        assert_eq!(r.cert_status, Some(OcspCertStatus::Revoked));
        assert_eq!(
            r.revoked_at,
            Some(t as i64 - REVOKED_BEFORE.as_secs() as i64)
        );

        let u = OcspStaple::parse(&response(&[5], OcspCertStatus::Unknown, at(t)), &[5]);
        assert_eq!(u.cert_status, Some(OcspCertStatus::Unknown));
    }

    #[test]
    fn other_serials_error_statuses_and_garbage_are_named() {
        let t = 1_748_736_000;
        let other = OcspStaple::parse(&response(&[9], OcspCertStatus::Good, at(t)), &[8]);
        assert_eq!(other.cert_status, None);
        assert_eq!(other.response_status, "successful");
        assert!(other.problem.unwrap().contains("none for the leaf"));

        let later = OcspResponse::try_later().to_der().unwrap();
        let l = OcspStaple::parse(&later, &[8]);
        assert_eq!(l.response_status, "tryLater");
        assert_eq!((l.cert_status, l.problem), (None, None));

        let junk = OcspStaple::parse(b"\x30\x03garbage", &[8]);
        assert_eq!(junk.response_status, "");
        assert!(junk.problem.unwrap().contains("does not parse"));
    }
}
