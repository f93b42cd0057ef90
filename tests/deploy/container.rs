//! The container image: built where an engine answers, otherwise linted (hadolint) and checked
//! for its contract: multi-stage, a runtime stage that installs nothing and runs as an
//! unprivileged user, port 9741, the configuration at the path the other deploy files mount, a
//! builder new enough for the locked dependencies and of the runtime's Debian release, a build
//! context of the copied sources only. Then the binary runs as the image runs it (uid 65532, no
//! capabilities, read-only root file system) with bubblewrap.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{default_port, find_tool, read, repo, require, run_ok, say, BIN};
use crate::support::exporter::{Exporter, Files, Servers};
use crate::support::programs::skip;

/// One instruction of a Dockerfile, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its `FROM` image, its name, its instructions.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &str) -> impl Iterator<Item = &'a str> + 'a {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    fn one(&self, keyword: &str) -> &str {
        let found: Vec<&str> = self.all(keyword).collect();
        assert_eq!(found.len(), 1, "stage {:?}: {keyword} {found:?}", self.name);
        found[0]
    }
}

/// The Dockerfile's global `ARG`s (before the first `FROM`) and its stages.
fn dockerfile() -> (Vec<(String, String)>, Vec<Stage>) {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                [_] => None,
                _ => panic!("FROM {rest}: expected IMAGE [AS NAME]"),
            };
            stages.push(Stage {
                image: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(Instruction {
                keyword,
                args: rest,
            });
        } else if keyword == "ARG" {
            let (name, value) = rest.split_once('=').expect("global ARG NAME=DEFAULT");
            args.push((name.to_string(), value.to_string()));
        }
    }
    (args, stages)
}

/// `1.89` → (1, 89).
fn version(text: &str) -> (u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().expect("a number"));
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

/// The newest `rust-version` among the locked dependencies and smtp-prober itself.
fn newest_rust_version() -> ((u64, u64), String) {
    let metadata = run_ok(
        Command::new(env!("CARGO"))
            .args(["metadata", "--format-version=1", "--locked", "--offline"])
            .current_dir(repo()),
    );
    let start = metadata.find('{').expect("cargo metadata JSON");
    let end = metadata.rfind('}').expect("cargo metadata JSON");
    let metadata: Value = serde_json::from_str(&metadata[start..=end]).expect("JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((version(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("some package declares a rust-version")
}

/// A JSON-array (exec form) instruction's words.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("not exec form (a JSON array): {args}"))
}

/// The image's contract, as the rest of deploy/ and the README rely on it.
#[test]
fn dockerfile_keeps_the_image_contract() {
    let (args, stages) = dockerfile();
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    let runtime = stages.last().unwrap();
    let build = stages
        .iter()
        .find(|s| s.name.as_deref() == Some("build"))
        .expect("a stage named build");

    // Small runtime image: nothing installed or built in it, only copied from the build stage.
    assert_ne!(runtime.image, build.image);
    assert_eq!(
        runtime.all("RUN").count(),
        0,
        "the runtime stage runs nothing"
    );
    for copy in runtime.all("COPY") {
        assert!(copy.starts_with("--from=build "), "COPY {copy}");
    }

    // Non-root, as the Kubernetes manifests' runAsUser says.
    let user = runtime.one("USER");
    let (uid, gid) = user.split_once(':').expect("USER UID:GID");
    let uid: u32 = uid
        .parse()
        .expect("a numeric uid (runAsNonRoot can check only those)");
    let gid: u32 = gid.parse().expect("a numeric gid");
    assert!(uid != 0 && gid != 0, "USER {user} is root");
    let deployment = crate::kubernetes::deployment();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"], uid,
        "the Deployment runs as another user than the image"
    );

    // The port the binary listens on by default.
    assert_eq!(runtime.one("EXPOSE"), default_port().to_string());

    // The entry point is the binary copied from the build stage; the default command reads the
    // configuration where Compose and Kubernetes mount it.
    let entrypoint = exec_form(runtime.one("ENTRYPOINT"));
    let copied = runtime.one("COPY");
    assert!(
        copied.ends_with(&format!(" {}", entrypoint[0])),
        "ENTRYPOINT {entrypoint:?} is not what COPY {copied} installs"
    );
    let cmd = exec_form(runtime.one("CMD"));
    let config = crate::common::flag(&cmd, "config.file").expect("CMD sets --config.file");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let k8s_args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    assert_eq!(crate::common::flag(&k8s_args, "config.file"), Some(config));

    // Reproducible build of the locked dependency set, by a compiler new enough for it.
    let cargo_build = build
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    assert!(cargo_build.contains("--release") && cargo_build.contains("--locked"));
    let rust = args
        .iter()
        .find(|(name, _)| name == "RUST_VERSION")
        .map(|(_, v)| v.as_str())
        .expect("ARG RUST_VERSION");
    let (needed, by) = newest_rust_version();
    assert!(
        version(rust) >= needed,
        "RUST_VERSION={rust} is older than {needed:?}, required by {by}"
    );
    // And Cargo.toml claims no older compiler than the locked dependencies need, so that
    // `cargo install --locked` works with the version the README names.
    let declared = env!("CARGO_PKG_RUST_VERSION");
    assert!(
        version(declared) >= needed,
        "Cargo.toml's rust-version {declared} is older than {needed:?}, required by {by}"
    );
    assert!(
        build.image.contains("${RUST_VERSION}"),
        "FROM {}",
        build.image
    );

    // Same Debian release on both sides, so the binary finds the glibc it was linked against.
    assert!(
        build.image.ends_with("-bookworm"),
        "builder {}",
        build.image
    );
    assert!(
        runtime.image.contains("debian12"),
        "runtime {}",
        runtime.image
    );

    // No secret baked into the image.
    for stage in &stages {
        for instruction in &stage.instructions {
            if matches!(instruction.keyword.as_str(), "ENV" | "ARG" | "LABEL") {
                let upper = instruction.args.to_ascii_uppercase();
                for word in ["PASSWORD", "SECRET", "TOKEN"] {
                    assert!(!upper.contains(word), "{instruction:?}");
                }
            }
        }
    }

    // The build context is exactly what the build stage copies: everything is ignored first,
    // then each COPY source (which must exist) is let in again.
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        ".dockerignore starts by ignoring everything"
    );
    let mut allowed: Vec<String> = patterns[1..]
        .iter()
        .map(|p| {
            p.strip_prefix('!')
                .unwrap_or_else(|| panic!(".dockerignore: {p} after *"))
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    let mut sources: Vec<String> = Vec::new();
    for copy in build.all("COPY") {
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            assert!(repo().join(source).exists(), "COPY source {source} missing");
            sources.push(source.to_string());
        }
    }
    allowed.sort();
    sources.sort();
    assert_eq!(
        allowed, sources,
        ".dockerignore lets in other files than COPY takes"
    );
}

/// Builds the image where a container engine answers; here there is none, so the test says so
/// and hadolint checks the Dockerfile (with its default rules, any finding fails).
#[test]
fn dockerfile_builds_or_lints_clean() {
    let engine = find_tool("docker").and_then(|docker| {
        let info = Command::new(&docker).arg("info").output().ok()?;
        info.status.success().then_some(docker)
    });
    match engine {
        Some(docker) => {
            run_ok(
                Command::new(&docker)
                    .args(["build", "--tag", "smtp-prober:deploy-test", "."])
                    .current_dir(repo()),
            );
            let version = run_ok(Command::new(&docker).args([
                "run",
                "--rm",
                "--read-only",
                "--cap-drop=ALL",
                "smtp-prober:deploy-test",
                "--version",
            ]));
            assert!(version.contains("smtp-prober"), "{version}");
        }
        None => say(
            "dockerfile_builds_or_lints_clean: no container engine answers (docker info failed \
             or no docker): the image is not built here; linting the Dockerfile with hadolint",
        ),
    }
    let Some(hadolint) = require("hadolint", "linting the Dockerfile") else {
        return;
    };
    let findings = run_ok(
        Command::new(hadolint)
            .args(["--no-color", "--failure-threshold=info"])
            .arg(repo().join("Dockerfile")),
    );
    assert!(findings.trim().is_empty(), "hadolint:\n{findings}");
}

/// bubblewrap running the binary as the image runs it: uid/gid of the image's USER without
/// supplementary groups, no capabilities, no new privileges, the whole file system read-only,
/// the binary at the image's path, `binds` (host path, container path) mounted read-only, and
/// a writable /tmp only with `tmp`. The directories that hold the binary and the mounts (/etc,
/// /run, …) are empty apart from those, as in the image.
fn as_in_the_image(binds: &[(&Path, &str)], tmp: bool, args: &[&str]) -> Option<Command> {
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        skip(
            "running the binary as in the image",
            "needs root (to switch users)",
        );
        return None;
    }
    let bwrap = require("bwrap", "running the binary as in the image")?;
    let setpriv = require("setpriv", "running the binary as in the image")?;
    let (_, stages) = dockerfile();
    let runtime = stages.last().unwrap();
    let entrypoint = exec_form(runtime.one("ENTRYPOINT"));
    let user = runtime.one("USER");
    let (uid, gid) = user.split_once(':').unwrap();
    let mut binds: Vec<(&Path, &str)> = binds.to_vec();
    binds.push((Path::new(BIN), &entrypoint[0]));
    let mut shadowed: Vec<String> = binds
        .iter()
        .map(|(_, dest)| {
            let parent = Path::new(dest).parent().unwrap().to_str().unwrap();
            assert_ne!(parent, "/", "{dest}: mount below a directory");
            parent.to_string()
        })
        .collect();
    shadowed.sort();
    shadowed.dedup();
    let mut command = Command::new(bwrap);
    command
        .args(["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"])
        .args(["--unshare-pid", "--die-with-parent", "--new-session"]);
    for dir in &shadowed {
        command.args(["--tmpfs", dir]);
    }
    for (host, dest) in &binds {
        command.arg("--ro-bind").arg(host).arg(dest);
    }
    for dir in &shadowed {
        command.args(["--remount-ro", dir]);
    }
    if tmp {
        // Mode 1777, as docker run --tmpfs and Compose make it.
        command.args(["--perms", "1777", "--tmpfs", "/tmp"]);
    }
    command
        .arg("--")
        .arg(setpriv)
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ])
        .arg(&entrypoint[0])
        .args(args);
    Some(command)
}

/// The image's default command (its configuration and a secret mounted read-only where the
/// Dockerfile says) with nothing writable at all; and `demo` with only a tmpfs on /tmp, as
/// the Dockerfile's comment and the Compose file give it.
#[test]
fn binary_runs_as_the_image_runs_it() {
    let mut servers = Servers::new();
    let target = servers.healthy();
    let files = Files::new();
    let secrets = tempfile::tempdir().expect("temp dir");
    let secret = secrets.path().join("smtp-password");
    std::fs::copy(files.dir.path().join("password"), &secret).expect("secret");
    files.write(&format!(
        r#"modules:
  submission:
    timeout: 5s
    tls: starttls
    tls_config: {{server_name: localhost, trust: [], ca_files: [/etc/smtp-prober/root.pem]}}
    auth: {{username: probe, password_file: /run/secrets/smtp-password}}
targets:
  - {{name: in-image, target: "{target}", module: submission, interval: 1s}}
"#
    ));
    let (_, stages) = dockerfile();
    let cmd = exec_form(stages.last().unwrap().one("CMD"));
    let config_dir = Path::new(crate::common::flag(&cmd, "config.file").unwrap())
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    args.push("--web.listen-address=127.0.0.1:0");
    let Some(command) = as_in_the_image(
        &[
            (files.dir.path(), &config_dir),
            (secrets.path(), "/run/secrets"),
        ],
        false,
        &args,
    ) else {
        return;
    };
    // Readable by the image's user only, as Kubernetes' fsGroup and Compose secrets make it.
    chown_for_image(&secret);
    // Traversable by the image's user: the temporary directories are 0700.
    for dir in [files.dir.path(), secrets.path()] {
        set_mode(dir, 0o755);
    }
    for file in ["smtp-prober.yml", "root.pem"] {
        set_mode(&files.dir.path().join(file), 0o644);
    }
    let exporter = Exporter::spawn(command);
    assert_eq!(exporter.get("/-/ready").status, 200);
    let page = exporter.metrics_until("a probe in the sandbox", |page| {
        page.contains(r#"probe_success{name="in-image""#)
    });
    let line = page
        .lines()
        .find(|l| l.starts_with(r#"probe_success{name="in-image""#))
        .unwrap();
    assert!(line.ends_with(" 1"), "{line}\n{page}");
    drop(exporter);

    // demo: writes its generated root certificate to /tmp, nothing else.
    let Some(command) = as_in_the_image(
        &[],
        true,
        &["demo", "--interval=1s", "--web.listen-address=127.0.0.1:0"],
    ) else {
        return;
    };
    let demo = Exporter::spawn(command);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = demo.get("/metrics").body;
        let healthy = page
            .lines()
            .find(|l| l.starts_with(r#"probe_success{name="demo-healthy""#));
        if let Some(line) = healthy {
            assert!(line.ends_with(" 1"), "{line}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo in the sandbox never probed:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Gives the image's user a file, mode 0400.
fn chown_for_image(path: &Path) {
    let (_, stages) = dockerfile();
    let user = stages.last().unwrap().one("USER");
    let (uid, gid) = user.split_once(':').unwrap();
    std::os::unix::fs::chown(path, uid.parse().ok(), gid.parse().ok()).expect("chown");
    set_mode(path, 0o400);
}
