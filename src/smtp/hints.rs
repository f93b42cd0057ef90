//! Provider reply hints: well-known rejections of Office 365, Gmail, Exchange and Postfix mapped
//! to a finite set of hint ids and a one-line fix. The table is data: add a row, add its test.
//!
//! A row matches on the enhanced status code (RFC 3463) and, when given, a case-insensitive piece
//! of the reply text; the first matching row wins, so rows with a text go before rows without.

use super::reply::Reply;

/// One known rejection.
#[derive(Debug, PartialEq, Eq)]
pub struct ProviderHint {
    /// A stable id (a bounded label value).
    pub id: &'static str,
    /// The enhanced code it matches, such as `5.7.139`; `None` matches any.
    pub enhanced: Option<&'static str>,
    /// A piece of the reply text it also requires, lower case.
    pub text: Option<&'static str>,
    /// What to do about it.
    pub fix: &'static str,
}

/// The table.
pub static PROVIDER_HINTS: &[ProviderHint] = &[
    // Office 365 says 5.7.139 for several things; the text tells them apart.
    ProviderHint {
        id: "bad_credentials",
        enhanced: Some("5.7.139"),
        text: Some("credentials were incorrect"),
        fix: BAD_CREDENTIALS,
    },
    ProviderHint {
        id: "security_defaults",
        enhanced: Some("5.7.139"),
        text: Some("security defaults"),
        fix: "Microsoft Entra security defaults block basic authentication for this account: authenticate with OAuth 2.0 (auth.oauth2 with mechanism xoauth2)",
    },
    ProviderHint {
        id: "conditional_access",
        enhanced: Some("5.7.139"),
        text: Some("did not meet the criteria"),
        fix: "a Conditional Access policy (MFA, location, device) refused the sign-in: exclude the probe account from the policy, or authenticate with OAuth 2.0 client credentials",
    },
    ProviderHint {
        id: "basic_auth_disabled",
        enhanced: Some("5.7.139"),
        text: Some("basic authentication is disabled"),
        fix: BASIC_AUTH_DISABLED,
    },
    ProviderHint {
        id: "smtp_auth_disabled",
        enhanced: Some("5.7.139"),
        text: None,
        fix: "SMTP AUTH is disabled for the tenant or the mailbox: enable Authenticated SMTP for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false) or the tenant",
    },
    ProviderHint {
        id: "basic_auth_disabled",
        enhanced: Some("5.7.30"),
        text: None,
        fix: BASIC_AUTH_DISABLED,
    },
    ProviderHint {
        id: "invalid_xoauth2_data",
        enhanced: None,
        text: Some("invalid xoauth2"),
        fix: "the XOAUTH2 data was refused: check that the token is for this mailbox, has the SMTP.SendAsApp permission and the scope https://outlook.office365.com/.default",
    },
    ProviderHint {
        id: "invalid_xoauth2_data",
        enhanced: Some("5.5.124"),
        text: None,
        fix: "the XOAUTH2 data was refused: check that the token is for this mailbox, has the SMTP.SendAsApp permission and the scope https://outlook.office365.com/.default",
    },
    ProviderHint {
        id: "client_timeout",
        enhanced: Some("4.7.0"),
        text: Some("timeout waiting for client input"),
        fix: "the server gave up waiting for the prober: look for a slow network path or a firewall holding packets between prober and server",
    },
    ProviderHint {
        id: "relay_denied",
        enhanced: Some("5.7.1"),
        text: Some("relay"),
        fix: "the server refuses to relay for this client: authenticate before MAIL FROM, or allow the prober's address as a relay client",
    },
    ProviderHint {
        id: "bad_credentials",
        enhanced: Some("5.7.3"),
        text: None,
        fix: BAD_CREDENTIALS,
    },
    ProviderHint {
        id: "bad_credentials",
        enhanced: Some("5.7.8"),
        text: None,
        fix: BAD_CREDENTIALS,
    },
    ProviderHint {
        id: "client_not_authenticated",
        enhanced: Some("5.7.57"),
        text: None,
        fix: "the server wants an authenticated client before it accepts mail: configure auth for this module",
    },
    ProviderHint {
        id: "send_as_denied",
        enhanced: Some("5.7.60"),
        text: None,
        fix: SEND_AS_DENIED,
    },
    ProviderHint {
        id: "send_as_denied",
        enhanced: None,
        text: Some("sendasdenied"),
        fix: SEND_AS_DENIED,
    },
    // Gmail.
    ProviderHint {
        id: "app_password_required",
        enhanced: Some("5.7.9"),
        text: None,
        fix: "Google wants an app password for this account (2-Step Verification is on): create one, or authenticate with OAuth 2.0 (xoauth2)",
    },
    ProviderHint {
        id: "web_login_required",
        enhanced: Some("5.7.14"),
        text: None,
        fix: "Google blocked the sign-in as suspicious: sign in once in a browser from the prober's network, or authenticate with OAuth 2.0 (xoauth2)",
    },
];

const BAD_CREDENTIALS: &str = "the credentials were rejected: check user name and password or token, and that the account is not locked or required to use MFA for SMTP";
const BASIC_AUTH_DISABLED: &str = "basic authentication is switched off for client submission: authenticate with OAuth 2.0 (auth.oauth2 with mechanism xoauth2)";
const SEND_AS_DENIED: &str = "the account may not send as the From address: grant it Send As rights (for an OAuth app, Add-MailboxPermission for its service principal), or send from the account's own address";

/// The first row matching the reply, if any.
pub fn lookup(reply: &Reply) -> Option<&'static ProviderHint> {
    let enhanced = reply.enhanced.map(|e| e.to_string());
    let text = reply.text().to_ascii_lowercase();
    PROVIDER_HINTS.iter().find(|h| {
        let code_ok = h.enhanced.is_none_or(|c| enhanced.as_deref() == Some(c));
        let text_ok = h.text.is_none_or(|t| text.contains(t));
        code_ok && text_ok && (h.enhanced.is_some() || h.text.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::{parse_reply, ReplyLimits};

    fn hint(raw: &str) -> Option<&'static str> {
        let (reply, _) = parse_reply(raw.as_bytes(), &ReplyLimits::default())
            .unwrap()
            .unwrap();
        lookup(&reply).map(|h| h.id)
    }

    #[test]
    fn every_row_has_its_case() {
        let cases = [
            ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.\r\n", "smtp_auth_disabled"),
            ("535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.\r\n", "bad_credentials"),
            ("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator.\r\n", "security_defaults"),
            ("535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.\r\n", "conditional_access"),
            ("535 5.7.139 Authentication unsuccessful, basic authentication is disabled.\r\n", "basic_auth_disabled"),
            ("550 5.7.30 Basic authentication is not supported for Client Submission.\r\n", "basic_auth_disabled"),
            ("535 5.7.3 Authentication unsuccessful\r\n", "bad_credentials"),
            ("535 5.7.8 Error: authentication failed: authentication failure\r\n", "bad_credentials"),
            ("535-5.7.8 Username and Password not accepted. For more information, go to\r\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials\r\n", "bad_credentials"),
            ("530 5.7.57 Client not authenticated to send mail. Error: 535 5.7.139\r\n", "client_not_authenticated"),
            ("550 5.7.60 SMTP; Client does not have permissions to send as this sender\r\n", "send_as_denied"),
            ("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message\r\n", "send_as_denied"),
            ("421 4.7.0 Timeout waiting for client input\r\n", "client_timeout"),
            ("504 5.5.124 Invalid XOAUTH2 auth data\r\n", "invalid_xoauth2_data"),
            ("535 5.5.124 Authentication unsuccessful, malformed auth data\r\n", "invalid_xoauth2_data"),
            ("535 Invalid XOAUTH2 auth data\r\n", "invalid_xoauth2_data"),
            ("554 5.7.1 <a@b.example>: Relay access denied\r\n", "relay_denied"),
            ("534-5.7.9 Application-specific password required. Learn more at\r\n534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor\r\n", "app_password_required"),
            ("534-5.7.14 <https://accounts.google.com/signin/continue?...>\r\n534 5.7.14 Please log in via your web browser and then try again.\r\n", "web_login_required"),
        ];
        let mut reached = vec![false; PROVIDER_HINTS.len()];
        for (raw, id) in cases {
            assert_eq!(hint(raw), Some(id), "{raw}");
            let (reply, _) = parse_reply(raw.as_bytes(), &ReplyLimits::default())
                .unwrap()
                .unwrap();
            let row = lookup(&reply).unwrap();
            if let Some(i) = PROVIDER_HINTS.iter().position(|r| std::ptr::eq(r, row)) {
                reached[i] = true;
            }
        }
        // Every row is the first match of at least one case: none is shadowed by another.
        for (row, reached) in PROVIDER_HINTS.iter().zip(reached) {
            assert!(
                reached,
                "row {} {:?} {:?} has no case",
                row.id, row.enhanced, row.text
            );
        }
    }

    #[test]
    fn unknown_replies_have_no_hint() {
        assert_eq!(
            hint("550 5.1.1 <x@y>: Recipient address rejected\r\n"),
            None
        );
        assert_eq!(hint("421 4.7.0 Try again later\r\n"), None);
        assert_eq!(hint("554 5.7.1 Message rejected as spam\r\n"), None);
        assert_eq!(hint("250 ok\r\n"), None);
    }
}
