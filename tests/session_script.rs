//! Protocol edge cases of the probe engine against a scripted in-process server: each test
//! writes down, byte for byte, what the server says and what it expects, so the failure reasons
//! of DESIGN §5 that a plain-text server can cause are each proven by a test.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_prober::probe::module::{
    AuthSettings, Credential, MechanismChoice, MessageSettings, Module, TlsMode,
};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::Mailbox;
use smtp_prober::vocab::{Reason, StepName};
use support::outcome::failure as failed;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One move of the scripted server.
#[derive(Clone)]
enum Act {
    /// Write these bytes.
    Say(&'static [u8]),
    /// Write these bytes, owned.
    SayOwned(Vec<u8>),
    /// Read one line, which must start with this prefix (case-insensitive); else close.
    Expect(&'static str),
    /// Read message content up to the lone dot line.
    ReadData,
    /// Write bytes slowly, one at a time.
    Drip(&'static [u8], Duration),
    /// Say nothing for this long.
    Stall(Duration),
    /// Close the connection.
    Close,
}

use Act::*;

/// Serves one connection with the script; returns the lines it received.
async fn serve(script: Vec<Act>) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    serve_on("127.0.0.1:0", script).await
}

/// [`serve`] on a given address (`[::1]:0` for IPv6).
async fn serve_on(
    bind: &str,
    script: Vec<Act>,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut received = Vec::new();
        let Ok((sock, _)) = listener.accept().await else {
            return received;
        };
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        for act in script {
            match act {
                Say(b) => {
                    if w.write_all(b).await.is_err() {
                        break;
                    }
                }
                SayOwned(b) => {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Expect(prefix) => {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    received.push(line.trim_end().to_string());
                    if !line
                        .to_ascii_uppercase()
                        .starts_with(&prefix.to_ascii_uppercase())
                    {
                        break;
                    }
                }
                ReadData => {
                    let mut data = Vec::new();
                    loop {
                        let mut line = Vec::new();
                        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                            break;
                        }
                        if line == b".\r\n" {
                            break;
                        }
                        data.extend_from_slice(&line);
                    }
                    received.push(String::from_utf8_lossy(&data).into_owned());
                }
                Drip(b, gap) => {
                    for byte in b {
                        if w.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(gap).await;
                    }
                }
                Stall(d) => tokio::time::sleep(d).await,
                Close => break,
            }
        }
        // Drain whatever the client still sends so it is not reset mid-write.
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(300), r.read(&mut sink)).await;
        received
    });
    (addr, handle)
}

fn plain_module() -> Module {
    Module {
        tls: TlsMode::None,
        timeout: Duration::from_secs(5),
        ehlo: smtp_prober::smtp::command::ClientName::new("probe.test").unwrap(),
        tls_config: smtp_prober::tls::TlsSettings {
            trust: vec![smtp_prober::tls::TrustKind::Bundled],
            ..Default::default()
        },
        ..Module::default()
    }
}

fn with_auth(mut m: Module, mechanism: MechanismChoice) -> Module {
    m.auth = Some(AuthSettings {
        mechanism,
        username: "probe".into(),
        credential: Credential::Password(Secret::new("s3cret-pw")),
    });
    m
}

fn with_message(mut m: Module) -> Module {
    m.message = Some(MessageSettings {
        from: Mailbox::new("probe@example.test").unwrap(),
        to: vec![Mailbox::new("inbox@example.test").unwrap()],
        subject: "MFA delivery probe {token}".into(),
        body: "Your authentication token code is {token}.".into(),
    });
    m
}

async fn probe(module: Module, addr: SocketAddr) -> ProbeOutcome {
    let prepared: Arc<PreparedModule> = PreparedModule::new("test", module).unwrap();
    let target = parse_target(&addr.to_string(), 25).unwrap();
    probe::run(&prepared, &target, Budget::new(prepared.module.timeout)).await
}

const GREETING: &[u8] = b"220 mx.example.test ESMTP scripted\r\n";
const EHLO_OK: &[u8] = b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n";

#[tokio::test]
async fn plain_full_send_records_every_step() {
    let (addr, server) = serve(vec![
        Say(GREETING),
        Expect("EHLO probe.test"),
        Say(EHLO_OK),
        Expect("AUTH PLAIN "),
        Say(b"235 2.7.0 Authentication successful\r\n"),
        Expect("MAIL FROM:<probe@example.test>"),
        Say(b"250 2.1.0 Ok\r\n"),
        Expect("RCPT TO:<inbox@example.test>"),
        Say(b"250 2.1.5 Ok\r\n"),
        Expect("DATA"),
        Say(b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        ReadData,
        Say(b"250 2.0.0 Ok: queued as 4ABCD\r\n"),
        Expect("QUIT"),
        Say(b"221 2.0.0 Bye\r\n"),
    ])
    .await;
    let o = probe(
        with_message(with_auth(plain_module(), MechanismChoice::Auto)),
        addr,
    )
    .await;
    assert!(o.success(), "{}", report::text::render(&o));
    let steps: Vec<(&str, Option<u16>)> = o
        .session
        .transcript
        .steps()
        .iter()
        .map(|s| (s.name.as_str(), s.reply.as_ref().map(|r| r.code)))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("resolve", None),
            ("connect", None),
            ("greeting", Some(220)),
            ("ehlo", Some(250)),
            ("auth", Some(235)),
            ("mail", Some(250)),
            ("rcpt", Some(250)),
            ("data", Some(354)),
            ("message", Some(250)),
            ("quit", Some(221)),
        ]
    );
    assert!(o.session.message_accepted);
    assert_eq!(o.session.auth_mechanism, Some("PLAIN"));
    let rcpt = o.session.transcript.step(StepName::Rcpt).unwrap();
    assert_eq!(
        rcpt.reply.as_ref().unwrap().enhanced.unwrap().to_string(),
        "2.1.5"
    );
    // Offsets grow and each step lies within the probe.
    let st = o.session.transcript.steps();
    assert!(st.windows(2).all(|w| w[0].offset <= w[1].offset));
    assert!(st.iter().all(|s| s.offset + s.duration <= o.duration));

    let received = server.await.unwrap();
    let data = &received[received.iter().position(|l| l == "DATA").unwrap() + 1];
    assert!(data.contains("Auto-Submitted: auto-generated\r\n"));
    assert!(data.contains(&format!(
        "X-Smtp-Prober-Id: {}",
        o.probe_id.as_deref().unwrap()
    )));
    let token = data
        .lines()
        .find_map(|l| l.strip_prefix("Subject: MFA delivery probe "))
        .expect("subject with token")
        .to_string();
    assert_eq!(token.len(), 8);

    // Neither the password nor the token shows in any output format.
    let outputs = [
        report::text::render(&o),
        report::json::to_json(&o),
        report::metrics::render(&o),
        format!("{o:?}"),
    ];
    for out in outputs {
        assert!(!out.contains("s3cret-pw"), "password leaked: {out}");
        assert!(!out.contains(&token), "token leaked: {out}");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode("\0probe\0s3cret-pw");
        assert!(!out.contains(&b64), "encoded password leaked");
    }
}

#[tokio::test]
async fn auth_login_and_535() {
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(b"250-mx\r\n250 AUTH LOGIN\r\n"),
        Expect("AUTH LOGIN"),
        Say(b"334 VXNlcm5hbWU6\r\n"),
        Expect("cHJvYmU="), // "probe"
        Say(b"334 UGFzc3dvcmQ6\r\n"),
        Expect("czNjcmV0LXB3"), // "s3cret-pw"
        Say(b"235 2.7.0 ok\r\n"),
        Expect("QUIT"),
        Say(b"221 bye\r\n"),
    ])
    .await;
    let o = probe(with_auth(plain_module(), MechanismChoice::Auto), addr).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(o.session.auth_mechanism, Some("LOGIN"));
    let auth = o.session.transcript.step(StepName::Auth).unwrap();
    assert_eq!(auth.sent.as_deref(), Some("AUTH LOGIN"));

    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(EHLO_OK),
        Expect("AUTH PLAIN"),
        Say(b"535 5.7.8 Error: authentication failed\r\n"),
        Expect("QUIT"),
        Say(b"221 bye\r\n"),
    ])
    .await;
    let o = probe(with_auth(plain_module(), MechanismChoice::Plain), addr).await;
    assert_eq!(failed(&o), (StepName::Auth, Reason::AuthFailed));
    let reply = o
        .session
        .transcript
        .step(StepName::Auth)
        .unwrap()
        .reply
        .clone()
        .unwrap();
    assert_eq!(
        (reply.code, reply.enhanced.unwrap().to_string()),
        (535, "5.7.8".to_string())
    );
    assert_eq!(
        o.session
            .transcript
            .step(StepName::Auth)
            .unwrap()
            .sent
            .as_deref(),
        Some("AUTH PLAIN ****")
    );
}

#[tokio::test]
async fn auth_not_offered() {
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(b"250-mx\r\n250 8BITMIME\r\n"),
        Expect("QUIT"),
        Say(b"221 bye\r\n"),
    ])
    .await;
    let o = probe(with_auth(plain_module(), MechanismChoice::Auto), addr).await;
    assert_eq!(failed(&o), (StepName::Auth, Reason::AuthNotOffered));
}

#[tokio::test]
async fn greeting_rejected_421_and_554() {
    for (greeting, code) in [
        (&b"421 4.3.2 Service not available\r\n"[..], 421),
        (&b"554 5.7.1 No SMTP service here\r\n"[..], 554),
    ] {
        let (addr, _s) = serve(vec![Say(greeting), Expect("QUIT"), Say(b"221 bye\r\n")]).await;
        let o = probe(plain_module(), addr).await;
        assert_eq!(failed(&o), (StepName::Greeting, Reason::GreetingRejected));
        assert_eq!(
            o.session
                .transcript
                .step(StepName::Greeting)
                .unwrap()
                .reply
                .as_ref()
                .unwrap()
                .code,
            code
        );
    }
}

#[tokio::test]
async fn multiline_greeting_is_accepted() {
    let (addr, _s) = serve(vec![
        Say(b"220-mx.example.test ESMTP\r\n220-No UCE\r\n220 ready\r\n"),
        Expect("EHLO"),
        Say(EHLO_OK),
        Expect("QUIT"),
        Say(b"221 bye\r\n"),
    ])
    .await;
    let o = probe(plain_module(), addr).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(
        o.session
            .transcript
            .step(StepName::Greeting)
            .unwrap()
            .reply
            .as_ref()
            .unwrap()
            .lines
            .len(),
        3
    );
}

#[tokio::test]
async fn ehlo_rejected() {
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(b"550 5.7.1 go away\r\n"),
        Expect("QUIT"),
    ])
    .await;
    let o = probe(plain_module(), addr).await;
    assert_eq!(failed(&o), (StepName::Ehlo, Reason::EhloRejected));
}

#[tokio::test]
async fn starttls_not_offered_and_rejected() {
    let mut m = plain_module();
    m.tls = TlsMode::Starttls;
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(EHLO_OK),
        Expect("QUIT"),
        Say(b"221 bye\r\n"),
    ])
    .await;
    let o = probe(m.clone(), addr).await;
    assert_eq!(failed(&o), (StepName::Starttls, Reason::StarttlsNotOffered));

    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(b"250-mx\r\n250 STARTTLS\r\n"),
        Expect("STARTTLS"),
        Say(b"454 4.7.0 TLS not available due to local problem\r\n"),
        Expect("QUIT"),
    ])
    .await;
    let o = probe(m, addr).await;
    assert_eq!(failed(&o), (StepName::Starttls, Reason::StarttlsRejected));
    assert_eq!(
        o.session
            .transcript
            .step(StepName::Starttls)
            .unwrap()
            .reply
            .as_ref()
            .unwrap()
            .code,
        454
    );
}

#[tokio::test]
async fn starttls_response_injection_is_a_protocol_error() {
    let mut m = plain_module();
    m.tls = TlsMode::Starttls;
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(b"250-mx\r\n250 STARTTLS\r\n"),
        Expect("STARTTLS"),
        Say(b"220 go ahead\r\n250 injected\r\n"),
        Stall(Duration::from_millis(500)),
    ])
    .await;
    let o = probe(m, addr).await;
    assert_eq!(failed(&o), (StepName::TlsHandshake, Reason::ProtocolError));
}

#[tokio::test]
async fn envelope_rejections() {
    let cases: Vec<(Vec<Act>, StepName, Reason)> = vec![
        (
            vec![
                Expect("MAIL"),
                Say(b"553 5.7.1 Sender address rejected: not owned by user\r\n"),
            ],
            StepName::Mail,
            Reason::SenderRejected,
        ),
        (
            vec![
                Expect("MAIL"),
                Say(b"250 ok\r\n"),
                Expect("RCPT"),
                Say(
                    b"550 5.1.1 <inbox@example.test>: Recipient address rejected: User unknown\r\n",
                ),
            ],
            StepName::Rcpt,
            Reason::RecipientRejected,
        ),
        (
            vec![
                Expect("MAIL"),
                Say(b"250 ok\r\n"),
                Expect("RCPT"),
                Say(b"250 ok\r\n"),
                Expect("DATA"),
                Say(b"554 5.5.1 No valid recipients\r\n"),
            ],
            StepName::Data,
            Reason::DataRejected,
        ),
        (
            vec![
                Expect("MAIL"),
                Say(b"250 ok\r\n"),
                Expect("RCPT"),
                Say(b"250 ok\r\n"),
                Expect("DATA"),
                Say(b"354 go\r\n"),
                ReadData,
                Say(b"550 5.7.1 Message rejected as spam\r\n"),
            ],
            StepName::Message,
            Reason::MessageRejected,
        ),
    ];
    for (tail, step, reason) in cases {
        let mut script = vec![Say(GREETING), Expect("EHLO"), Say(EHLO_OK)];
        script.extend(tail);
        script.extend([Expect("QUIT"), Say(b"221 bye\r\n")]);
        let (addr, _s) = serve(script).await;
        let o = probe(with_message(plain_module()), addr).await;
        assert_eq!(failed(&o), (step, reason), "{}", report::text::render(&o));
        assert!(!o.session.message_accepted);
    }
    // The enhanced code of the RCPT rejection is kept as data.
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(EHLO_OK),
        Expect("MAIL"),
        Say(b"250 ok\r\n"),
        Expect("RCPT"),
        Say(b"550 5.1.1 <inbox@example.test>: Recipient address rejected\r\n"),
        Expect("QUIT"),
    ])
    .await;
    let o = probe(with_message(plain_module()), addr).await;
    let r = o
        .session
        .transcript
        .step(StepName::Rcpt)
        .unwrap()
        .reply
        .clone()
        .unwrap();
    assert_eq!(
        (r.code, r.enhanced.unwrap().to_string()),
        (550, "5.1.1".into())
    );
    let metrics = report::metrics::render(&o);
    assert!(
        metrics
            .contains(r#"probe_smtp_failed_step_info{step="rcpt",reason="recipient_rejected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"probe_smtp_reply_info{step="rcpt",code="550",enhanced_code="5.1.1"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("probe_smtp_message_accepted 0"));
    assert!(metrics.contains("probe_success 0"));
}

#[tokio::test]
async fn silent_server_costs_exactly_the_deadline() {
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Stall(Duration::from_secs(10)),
    ])
    .await;
    let mut m = plain_module();
    m.timeout = Duration::from_millis(700);
    let began = Instant::now();
    let o = probe(m, addr).await;
    let took = began.elapsed();
    assert_eq!(failed(&o), (StepName::Ehlo, Reason::Timeout));
    assert!(took >= Duration::from_millis(690), "{took:?}");
    assert!(
        took < Duration::from_millis(1100),
        "the probe outlived its deadline: {took:?}"
    );
}

#[tokio::test]
async fn drip_fed_greeting_times_out_in_greeting() {
    let (addr, _s) = serve(vec![Drip(
        b"220 slowly dripping greeting that never ends",
        Duration::from_millis(50),
    )])
    .await;
    let mut m = plain_module();
    m.timeout = Duration::from_millis(600);
    let o = probe(m, addr).await;
    assert_eq!(failed(&o), (StepName::Greeting, Reason::Timeout));
}

#[tokio::test]
async fn connection_closed_mid_session() {
    let (addr, _s) = serve(vec![Say(GREETING), Expect("EHLO"), Close]).await;
    let o = probe(plain_module(), addr).await;
    assert_eq!(failed(&o), (StepName::Ehlo, Reason::ConnectionClosed));

    let (addr, _s) = serve(vec![Say(b"220-partial greeting\r\n"), Close]).await;
    let o = probe(plain_module(), addr).await;
    assert_eq!(failed(&o), (StepName::Greeting, Reason::ConnectionClosed));
    assert!(o.failure.unwrap().detail.contains("middle of a reply"));
}

#[tokio::test]
async fn hostile_replies_are_protocol_errors() {
    let giant = {
        let mut v = b"220 ".to_vec();
        v.extend(std::iter::repeat_n(b'x', 1 << 20));
        v
    };
    let endless = {
        let mut v = Vec::new();
        for _ in 0..10_000 {
            v.extend_from_slice(b"250-again and again\r\n");
        }
        v
    };
    let cases: Vec<(Vec<Act>, StepName)> = vec![
        (
            vec![Say(b"HTTP/1.1 400 Bad Request\r\n\r\n")],
            StepName::Greeting,
        ),
        (vec![SayOwned(giant)], StepName::Greeting),
        (
            vec![Say(GREETING), Expect("EHLO"), SayOwned(endless)],
            StepName::Ehlo,
        ),
        (
            vec![
                Say(GREETING),
                Expect("EHLO"),
                Say(b"250-mx\r\n550 mixed\r\n"),
            ],
            StepName::Ehlo,
        ),
        (
            vec![Say(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")],
            StepName::Greeting,
        ),
    ];
    for (script, step) in cases {
        let (addr, _s) = serve(script).await;
        let began = Instant::now();
        let o = probe(plain_module(), addr).await;
        assert_eq!(
            failed(&o),
            (step, Reason::ProtocolError),
            "{}",
            report::text::render(&o)
        );
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "a hostile reply must fail fast"
        );
    }
}

#[tokio::test]
async fn connect_refused() {
    // Bind then drop: the port is free and nothing listens.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let o = probe(plain_module(), addr).await;
    assert_eq!(failed(&o), (StepName::Connect, Reason::ConnectRefused));
}

#[tokio::test]
async fn quit_without_221_does_not_fail_the_probe() {
    let (addr, _s) = serve(vec![
        Say(GREETING),
        Expect("EHLO"),
        Say(EHLO_OK),
        Expect("QUIT"),
        Close,
    ])
    .await;
    let o = probe(plain_module(), addr).await;
    assert!(o.success());
    assert!(o
        .session
        .transcript
        .step(StepName::Quit)
        .unwrap()
        .reply
        .is_none());
}

#[tokio::test]
async fn ipv6_target_and_address_family_choice() {
    let script = || {
        vec![
            Say(GREETING),
            Expect("EHLO"),
            Say(EHLO_OK),
            Expect("QUIT"),
            Say(b"221 bye\r\n"),
        ]
    };
    let (addr, _s) = serve_on("[::1]:0", script()).await;
    assert_eq!(addr.to_string(), format!("[::1]:{}", addr.port()));
    let o = probe(plain_module(), addr).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert!(o.session.peer.unwrap().is_ipv6());
    let metrics = report::metrics::render(&o);
    assert!(metrics.contains("probe_ip_protocol 6"), "{metrics}");

    // `localhost` resolves through /etc/hosts (to one or both families); ip4 picks 127.0.0.1.
    let (addr, _s) = serve(script()).await;
    let mut m = plain_module();
    m.ip_protocol = smtp_prober::probe::module::IpProtocol::Ip4;
    let prepared = PreparedModule::new("test", m).unwrap();
    let target = parse_target(&format!("localhost:{}", addr.port()), 25).unwrap();
    let o = probe::run(&prepared, &target, Budget::new(prepared.module.timeout)).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(o.session.peer.unwrap().ip().to_string(), "127.0.0.1");

    // An IPv6 literal cannot be reached over IPv4: a DNS-stage failure, no connection attempt.
    let mut m = plain_module();
    m.ip_protocol = smtp_prober::probe::module::IpProtocol::Ip4;
    let prepared = PreparedModule::new("test", m).unwrap();
    let target = parse_target("[::1]:25", 25).unwrap();
    let o = probe::run(&prepared, &target, Budget::new(prepared.module.timeout)).await;
    assert_eq!(failed(&o), (StepName::Resolve, Reason::DnsError));
    assert!(o.session.transcript.step(StepName::Connect).is_none());
}
