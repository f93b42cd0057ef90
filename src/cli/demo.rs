//! `smtp-prober demo`: two embedded STARTTLS servers on loopback (one healthy, one sending an
//! incomplete chain) and the exporter scheduling probes against them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::args::{LogArgs, WebArgs};
use super::serve::{init_logging, serve_until_signal};
use crate::config::Config;
use crate::exporter::{ConfigSource, Exporter};
use crate::shard::Shard;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    log: LogArgs,
    /// How often each demo target is probed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// Files the demo writes for its configuration (the demo root certificate, the AUTH password),
/// removed when the demo ends.
pub(crate) struct DemoFiles(PathBuf);

impl DemoFiles {
    fn create(root_pem: &str, password: &str) -> anyhow::Result<DemoFiles> {
        let dir = std::env::temp_dir().join(format!("smtp-prober-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = DemoFiles(dir);
        std::fs::write(files.root(), root_pem)
            .with_context(|| format!("writing {}", files.root().display()))?;
        std::fs::write(files.password(), password)
            .with_context(|| format!("writing {}", files.password().display()))?;
        Ok(files)
    }

    fn root(&self) -> PathBuf {
        self.0.join("demo-root.pem")
    }

    fn password(&self) -> PathBuf {
        self.0.join("smtp-password")
    }
}

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo configuration: a submission module (STARTTLS, AUTH, a token mail) for the healthy
/// server, a STARTTLS-only module for the one that sends an incomplete chain. Both trust the
/// demo root alone, so that nothing depends on the machine's trust store.
fn demo_yaml(
    files: &DemoFiles,
    healthy: std::net::SocketAddr,
    broken: std::net::SocketAddr,
    interval: Duration,
) -> String {
    let interval = humantime::format_duration(interval);
    let root = files.root();
    let password = files.password();
    format!(
        r#"# smtp-prober demo: two embedded STARTTLS servers on loopback with a generated PKI.
scheduler:
  max_concurrency: 4
  min_send_interval: 0s
modules:
  demo_submission:
    timeout: 5s
    tls: starttls
    ehlo: smtp-prober.demo
    tls_config:
      server_name: localhost
      trust: []
      ca_files: ["{root}"]
    auth:
      mechanism: auto
      username: probe
      password_file: "{password}"
    message:
      from: probe@smtp-prober.demo
      to: [inbox@smtp-prober.demo]
      subject: "smtp-prober demo {{token}}"
      body: "Your authentication token code is {{token}}."
  demo_starttls:
    timeout: 5s
    tls: starttls
    ehlo: smtp-prober.demo
    tls_config:
      server_name: localhost
      trust: []
      ca_files: ["{root}"]
targets:
  - name: demo-healthy
    target: "{healthy}"
    module: demo_submission
    interval: {interval}
    labels: {{scenario: healthy}}
  - name: demo-incomplete-chain
    target: "{broken}"
    module: demo_starttls
    interval: {interval}
    labels: {{scenario: incomplete_chain}}
"#,
        root = root.display(),
        password = password.display(),
    )
}

pub(crate) async fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    use crate::demo::{ocsp::OcspCertStatus, DemoPki, DemoServer, Sent, ServerConfig};
    init_logging(&args.log);
    let settings = args.web.probe_settings()?;
    let web = args.web.web_config()?;
    let pki = DemoPki::localhost();
    let healthy = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        ocsp: Some(OcspCertStatus::Good),
        ..ServerConfig::default()
    })
    .await
    .context("starting the healthy demo server")?;
    let broken = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        sent: Sent::LeafOnly,
        ..ServerConfig::default()
    })
    .await
    .context("starting the incomplete-chain demo server")?;
    let password = ServerConfig::default()
        .users
        .get("probe")
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let files = DemoFiles::create(pki.root_pem(), &password)?;
    let yaml = demo_yaml(&files, healthy.addr(), broken.addr(), args.interval);
    let config = Config::from_str(&yaml, "demo").map_err(|e| anyhow::anyhow!("{e}"))?;
    let exporter = Exporter::start(ConfigSource::Fixed(Box::new(config)), Shard::ALL)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (healthy_addr, broken_addr) = (healthy.addr(), broken.addr());
    let scheme = if web.tls_enabled() { "https" } else { "http" };
    let code = serve_until_signal(exporter, &args.web, &web, settings, |bound| {
        let host = if bound.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            match bound {
                std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
                std::net::SocketAddr::V4(a) => a.ip().to_string(),
            }
        };
        let base = format!("{scheme}://{host}:{}", bound.port());
        println!(
            "smtp-prober demo\n\
             \n  healthy STARTTLS server (full chain, AUTH, token mail): {healthy_addr}\
             \n  broken STARTTLS server (sends only its leaf):           {broken_addr}\
             \n  both probed every {}\n\
             \nOpen:\
             \n  status page      {base}/\
             \n  metrics          {base}/metrics\
             \n  probe logs       {base}/logs?target=demo-healthy\
             \n                   {base}/logs?target=demo-incomplete-chain\
             \n  one probe        {base}/probe?module=demo_starttls&target={healthy_addr}\
             \n  with its log     {base}/probe?module=demo_starttls&target={broken_addr}&debug=true\
             \n  configuration    {base}/config\
             \n\nStop with Ctrl-C.",
            humantime::format_duration(args.interval)
        );
    })
    .await;
    drop(files);
    healthy.shutdown().await;
    broken.shutdown().await;
    code
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn demo_listens_on_loopback_unless_told() {
        let demo = |args: &[&str]| match crate::cli::Cli::try_parse_from(args).unwrap().command {
            Some(crate::cli::Command::Demo(demo)) => demo.web.listen_address,
            _ => panic!("not demo"),
        };
        assert_eq!(demo(&["smtp-prober", "demo"]), "127.0.0.1:9741");
        assert_eq!(
            demo(&["smtp-prober", "demo", "--web.listen-address=:9741"]),
            ":9741"
        );
        let help = crate::cli::Cli::try_parse_from(["smtp-prober", "serve", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("[default: :9741]"), "{help}");
    }
}
