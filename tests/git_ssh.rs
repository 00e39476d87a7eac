//! The Git source over ssh against a real OpenSSH server (Debian's
//! `openssh-server`, which scripts/test.sh installs) started on loopback
//! with a host key and a client key made here: key authentication, host-key
//! verification against `known_hosts_file`, and a clear refusal of a host
//! whose key does not match.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plumb::config::{GitAuth, GitSpec};

struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "plumb-test", "-f"])
        .arg(path));
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null"))
}

/// Starts sshd on a free loopback port; returns it and the port.
fn start_sshd(dir: &Path) -> (Sshd, u16) {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "the ssh tests need Debian's openssh-server (scripts/test.sh installs it)"
    );
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd's privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {pid}\nLogLevel ERROR\n",
        host = dir.join("host_key").display(),
        keys = dir.join("authorized_keys").display(),
        pid = dir.join("sshd.pid").display(),
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Sshd(child), port)
}

fn known_hosts(dir: &Path, port: u16, key_file: &str) -> std::path::PathBuf {
    let key = std::fs::read_to_string(dir.join(key_file)).unwrap();
    let mut parts = key.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{port} {} {}\n",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    let path = dir.join(format!("known_hosts_{key_file}"));
    std::fs::write(&path, line).unwrap();
    path
}

#[test]
fn ssh_with_a_key_and_a_verified_host_key_checks_out_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_sshd, port) = start_sshd(root);

    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("a.yaml"), "id: a\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first over ssh"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    run(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(root.join("origin.git")));

    let user = run(Command::new("id").arg("-un"));
    let spec = |known: std::path::PathBuf| GitSpec {
        url: format!("ssh://{user}@127.0.0.1:{port}{}", root.join("origin.git").display()),
        reference: "main".into(),
        auth: Some(GitAuth {
            ssh_key_file: Some(root.join("client_key")),
            known_hosts_file: Some(known),
            ..Default::default()
        }),
        poll: None,
    };

    let good = spec(known_hosts(root, port, "host_key.pub"));
    let checkout = plumb::source::git::checkout(&good, "main", &root.join("state")).unwrap();
    assert_eq!(checkout.info.commit.as_deref(), Some(commit.as_str()));
    assert_eq!(checkout.info.subject.as_deref(), Some("first over ssh"));
    assert_eq!(
        std::fs::read_to_string(checkout.root.join("a.yaml")).unwrap(),
        "id: a\n"
    );

    // A host whose key is not the one known: refused, saying why.
    let wrong = spec(known_hosts(root, port, "client_key.pub"));
    let err = plumb::source::git::checkout(&wrong, "main", &root.join("state2"))
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("host key"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
}
