//! The Git source against real repositories: local paths and smart HTTP
//! served by `git http-backend` behind a tiny CGI shim with Basic auth.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plumb::config::{GitAuth, GitSpec, SourceSpec};
use plumb::source::{self, git, SourceError};

/// base64("x-access-token:s3cr3t-token")
const GOOD_BASIC: &str = "eC1hY2Nlc3MtdG9rZW46czNjcjN0LXRva2Vu";
const TOKEN: &str = "s3cr3t-token";

fn git_cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Grace Hopper")
        .env("GIT_AUTHOR_EMAIL", "grace@example.com")
        .env("GIT_COMMITTER_NAME", "Grace Hopper")
        .env("GIT_COMMITTER_EMAIL", "grace@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn make_origin(root: &Path) -> (PathBuf, String) {
    let path = root.join("ops");
    std::fs::create_dir_all(path.join("clusters/prod")).unwrap();
    git_cli(&path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("clusters/prod/app.yaml"), "replicas: 3\n").unwrap();
    git_cli(&path, &["add", "-A"]);
    git_cli(&path, &["commit", "-q", "-m", "Scale prod to three"]);
    git_cli(&path, &["tag", "-a", "v1.0", "-m", "first release"]);
    let head = git_cli(&path, &["rev-parse", "HEAD"]);
    (path, head)
}

fn git_spec(url: &str, auth: Option<GitAuth>) -> GitSpec {
    GitSpec {
        url: url.to_string(),
        reference: "main".into(),
        auth,
        poll: None,
    }
}

#[test]
fn checkout_through_the_source_module() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, head) = make_origin(dir.path());
    let state = dir.path().join("state");
    let spec = SourceSpec {
        git: Some(git_spec(origin.to_str().unwrap(), None)),
        dir: None,
    };
    let co = source::checkout(&spec, None, &state).unwrap();
    assert_eq!(co.info.commit.as_deref(), Some(head.as_str()));
    assert_eq!(co.info.author.as_deref(), Some("Grace Hopper <grace@example.com>"));
    assert_eq!(co.info.subject.as_deref(), Some("Scale prod to three"));
    assert!(co.root.join("clusters/prod/app.yaml").is_file());
    let co = source::checkout(&spec, Some("v1.0"), &state).unwrap();
    assert_eq!(co.info.reference.as_deref(), Some("v1.0"));
    assert_eq!(co.info.commit.as_deref(), Some(head.as_str()));
}

// -- smart HTTP ----------------------------------------------------------

/// Serves `git http-backend` for repositories below `root` on a loopback
/// port, asking for Basic auth with [`GOOD_BASIC`]. One request per
/// connection.
fn serve_http(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = handle(stream, &root);
            });
        }
    });
    port
}

fn handle(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }

    if header("authorization").as_deref() != Some(&format!("Basic {GOOD_BASIC}")) {
        stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, p + 2)))
        .unwrap_or((0, 0));
    let head = String::from_utf8_lossy(&out[..split.0]).into_owned();
    let content = &out[split.1..];
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    let mut extra = String::new();
    for line in head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => extra.push_str(&format!("{}\r\n", line.trim_end())),
            None => {}
        }
    }
    response.extend_from_slice(
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            content.len()
        )
        .as_bytes(),
    );
    response.extend_from_slice(content);
    stream.write_all(&response)?;
    stream.flush()
}

#[test]
fn token_auth_over_smart_http() {
    let dir = tempfile::tempdir().unwrap();
    let (_origin, head) = make_origin(dir.path());
    let port = serve_http(dir.path().to_path_buf());
    let state = dir.path().join("state");
    let url = format!("http://127.0.0.1:{port}/ops");

    // The right token, from the environment.
    std::env::set_var("PLUMB_GIT_TEST_TOKEN_GOOD", TOKEN);
    let auth = GitAuth {
        token_env: Some("PLUMB_GIT_TEST_TOKEN_GOOD".into()),
        ..GitAuth::default()
    };
    let co = git::checkout(&git_spec(&url, Some(auth)), "main", &state).unwrap();
    assert_eq!(co.info.commit.as_deref(), Some(head.as_str()));
    assert_eq!(co.info.url, url);
    assert!(co.root.join("clusters/prod/app.yaml").is_file());
    let info = git::resolve(
        &git_spec(
            &url,
            Some(GitAuth {
                token_env: Some("PLUMB_GIT_TEST_TOKEN_GOOD".into()),
                ..GitAuth::default()
            }),
        ),
        "v1.0",
        &state,
    )
    .unwrap();
    assert_eq!(info.commit.as_deref(), Some(head.as_str()));

    // A wrong token: an Auth error naming the variable, never the value.
    std::env::set_var("PLUMB_GIT_TEST_TOKEN_BAD", "wrong-token-value");
    let auth = GitAuth {
        token_env: Some("PLUMB_GIT_TEST_TOKEN_BAD".into()),
        ..GitAuth::default()
    };
    let err = git::checkout(&git_spec(&url, Some(auth)), "main", &state).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, SourceError::Auth { .. }), "{text}");
    assert!(text.contains("PLUMB_GIT_TEST_TOKEN_BAD"), "{text}");
    assert!(!text.contains("wrong-token-value"), "{text}");

    // No auth configured: an Auth error that says what to configure.
    let err = git::checkout(&git_spec(&url, None), "main", &state).unwrap_err();
    assert!(matches!(err, SourceError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("token_env"), "{err}");

    // Credentials in the URL work and never show.
    let with_creds = format!("http://x-access-token:{TOKEN}@127.0.0.1:{port}/ops");
    let co = git::checkout(&git_spec(&with_creds, None), "main", &state).unwrap();
    assert_eq!(co.info.url, url);
    let err = git::checkout(&git_spec(&with_creds, None), "no-such-ref", &state).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(TOKEN), "{err}");
    let missing = format!("http://x-access-token:{TOKEN}@127.0.0.1:{port}/missing");
    let err = git::checkout(&git_spec(&missing, None), "main", &state).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(TOKEN), "{err}");
    assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
}
