//! Running a plugin program: no shell, stdin closed or fed one payload,
//! stdout collected whole, stderr kept as a short tail for messages, and a
//! hard timeout after which the program and everything it started are
//! killed and reaped, so an audit can never hang on a plugin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How much of stderr is kept while reading (the message shows less).
const STDERR_KEEP: usize = 64 * 1024;
/// What a message quotes of stderr: people need the last error lines, not
/// a whole debug log in a plan.
const TAIL_LINES: usize = 20;
const TAIL_BYTES: usize = 2048;
/// How long to wait for a killed program to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// One program to run.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub extra_env: Vec<(&'static str, String)>,
    pub workdir: Option<&'a PathBuf>,
    pub timeout: Duration,
}

/// What a finished program left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The kept tail of stderr, lossily decoded.
    pub stderr: String,
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (not found, not executable).
    Spawn(std::io::Error),
    /// It ran past its timeout and was killed.
    Timeout,
    /// Reading its output failed, or it printed more than [`MAX_STDOUT`].
    Io(std::io::Error),
}

/// The command line as people would type it, for messages.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `inv`, writing `stdin` to it when given (stdin is closed otherwise).
pub async fn run(inv: &Invocation<'_>, stdin: Option<&[u8]>) -> Result<Finished, RunError> {
    let Some((program, args)) = inv.argv.split_first() else {
        return Err(RunError::Spawn(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        )));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(inv.env)
        .envs(inv.extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = inv.workdir {
        command.current_dir(dir);
    }
    // Its own process group, so a timeout kills the script and whatever it
    // started, not just the shell (which would leave a `sleep` holding the
    // pipes open).
    #[cfg(unix)]
    command.process_group(0);

    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let mut group = GroupKiller::new(child.id());
    let stdin_pipe = child.stdin.take();
    let stdout_pipe = child.stdout.take();
    let stderr_pipe = child.stderr.take();

    let work = async {
        let write = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin_pipe, stdin) {
                match pipe.write_all(bytes).await {
                    // The program may exit without reading its input; its
                    // exit status says whether that was fine.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other?,
                }
                // Dropping the pipe closes it: the program sees end of input.
                drop(pipe);
            }
            Ok::<(), std::io::Error>(())
        };
        let ((), status, stdout, stderr) =
            tokio::try_join!(write, child.wait(), read_capped(stdout_pipe), read_tail(stderr_pipe))?;
        Ok::<_, std::io::Error>(Finished { status, stdout, stderr })
    };
    let result = tokio::time::timeout(inv.timeout, work).await;
    match result {
        Ok(Ok(finished)) => {
            group.disarm();
            Ok(finished)
        }
        Ok(Err(e)) => {
            group.kill();
            reap(&mut child).await;
            Err(RunError::Io(e))
        }
        Err(_) => {
            tracing::warn!(
                command = %command_line(inv.argv),
                timeout = ?inv.timeout,
                "plugin command timed out; killing it"
            );
            group.kill();
            reap(&mut child).await;
            Err(RunError::Timeout)
        }
    }
}

async fn reap(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    if tokio::time::timeout(REAP_GRACE, child.wait()).await.is_err() {
        tracing::warn!(pid = ?child.id(), "killed plugin command did not exit; leaving it to the reaper");
    }
}

async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Vec<u8>> {
    // Refuse stdout beyond `limits.max_live_bytes`: a plugin stuck in a
    // loop must not exhaust plumb's memory before its timeout.
    let limit = plumb_model::limits::max_live_bytes();
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit + 1).read_to_end(&mut out).await?;
        if out.len() as u64 > limit {
            return Err(std::io::Error::other(format!(
                "printed more than {} on stdout (limits.max_live_bytes)",
                plumb_model::limits::human(limit)
            )));
        }
    }
    Ok(out)
}

/// Reads all of stderr (so the program never blocks on a full pipe) but
/// keeps only its end.
async fn read_tail<R: AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<String> {
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        let mut buf = [0u8; 8192];
        loop {
            let n = pipe.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_KEEP {
                kept.drain(..kept.len() - STDERR_KEEP);
            }
        }
    }
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// The last [`TAIL_LINES`] lines and at most [`TAIL_BYTES`] bytes of `text`,
/// trimmed, with `…` where something was cut.
pub fn tail(text: &str) -> String {
    let text = text.trim();
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines.len() > TAIL_LINES;
    let mut out = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if out.len() > TAIL_BYTES {
        let mut start = out.len() - TAIL_BYTES;
        while !out.is_char_boundary(start) {
            start += 1;
        }
        out = out[start..].to_string();
        cut = true;
    }
    if cut {
        format!("…{out}")
    } else {
        out
    }
}

/// Kills the program's process group on timeout, on error, and when the
/// audit is abandoned mid-run (the future is dropped), unless disarmed
/// after a normal exit.
struct GroupKiller {
    pgid: Option<u32>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        GroupKiller { pgid: pid }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(unix)]
fn kill_group(pgid: u32) {
    // Never 0 or 1: kill(0) and kill(-1) would hit plumb's own group or
    // every process it may signal.
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; the group was
        // created for this child by `process_group(0)`, and its leader has
        // not been reaped yet (or the group still has members), so the id
        // cannot name someone else's group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_pgid: u32) {
    // kill_on_drop / start_kill end the direct child; Windows has no groups
    // to signal here.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed() {
        let argv = vec![
            "./list.sh".to_string(),
            "--org=acme".to_string(),
            "two words".to_string(),
            "it's".to_string(),
        ];
        assert_eq!(command_line(&argv), r"./list.sh --org=acme 'two words' 'it'\''s'");
    }

    #[test]
    fn tail_keeps_last_lines_and_bytes() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("…line 11\n"), "{t}");
        assert!(t.ends_with("line 30"), "{t}");
        let long = "é".repeat(3000);
        let t = tail(&long);
        assert!(t.len() <= TAIL_BYTES + "…".len());
        assert!(t.starts_with('…'));
        assert_eq!(tail("  boom \n\n"), "boom");
    }
}
