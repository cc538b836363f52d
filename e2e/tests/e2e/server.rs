//! A server of the Prometheus family from its Debian package (`.ci/tools.sh` installs them) as a
//! child process on 127.0.0.1, with a folder of its own (config, data, log): what `prometheus.rs`
//! and `alertmanager.rs` share, so each of them only says its config, flags and API. Whatever
//! ends the run, the server does not outlive the test process: `Drop` kills it, and a janitor in
//! a session of its own does when the process dies without unwinding.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use custody_e2e::local::{free_port, janitor, tail, terminate};
use custody_e2e::{http_get, wait_for};

/// Closes every file descriptor above stderr of the shell it runs in: what the test process
/// inherited without close-on-exec (the lab's lock, a CI runner's pipe) must not be held open by
/// a server, or the next run waits for it.
const CLOSE_INHERITED: &str =
    r#"for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done"#;

/// The binary: `env` when set (and then only that file), else the first of `names` on PATH or
/// in /usr/bin (where Debian puts them, should PATH not have it); `None` when there is none.
pub fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .collect();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A server process on a port of its own, killed when dropped; then its folder goes.
pub struct LocalServer {
    /// Names its folder, its log and its messages.
    name: &'static str,
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Behind a lock so a scenario holding `&` can stop and start it (an outage).
    child: Mutex<Option<Child>>,
    janitor: Option<Child>,
}

impl LocalServer {
    /// An empty folder (with `data/` for its storage), a free port and the janitor; the server
    /// starts with `start`, once its config is in the folder.
    pub fn prepare(name: &'static str, binary: PathBuf) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("custody-e2e-{name}-{}", std::process::id()));
        // A run that died with this pid left its data: start empty.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        let mut server = Self {
            name,
            binary,
            port: free_port()?,
            dir,
            child: Mutex::new(None),
            janitor: None,
        };
        server.janitor = Some(server.spawn_janitor()?);
        Ok(server)
    }

    /// A file of its folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Where it listens, as its `--web.listen-address`.
    pub fn listen(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its base URL.
    pub fn address(&self) -> String {
        format!("http://{}", self.listen())
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self) -> String {
        tail(&self.log())
    }

    fn log(&self) -> PathBuf {
        self.path(&format!("{}.log", self.name))
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the binary with `flags` unless it runs (again: same port, same folder, its log
    /// appended to), and waits for `/-/ready`, which every server of the family serves.
    pub async fn start(&self, flags: &[String]) -> anyhow::Result<()> {
        if !self.running() {
            let child = self.spawn(flags)?;
            // For the janitor, which outlives this process's memory of it.
            std::fs::write(self.path("pid"), child.id().to_string())?;
            *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        }
        let ready = format!("{}/-/ready", self.address());
        wait_for(
            &format!("{} ready", self.name),
            Duration::from_secs(60),
            || async {
                anyhow::ensure!(self.running(), "{} exited; {}", self.name, self.log_tail());
                Ok(http_get(&ready)
                    .await
                    .is_ok_and(|(code, _)| code == 200)
                    .then_some(()))
            },
        )
        .await
    }

    /// Through a shell that closes the inherited descriptors first, then the server in place of
    /// the shell (same pid, so killing the child kills the server).
    fn spawn(&self, flags: &[String]) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        Command::new("bash")
            .args(["-c", &format!("{CLOSE_INHERITED}; exec \"$@\""), self.name])
            .arg(&self.binary)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", self.binary.display()))
    }

    /// Stops the process (SIGTERM, then SIGKILL) and waits for it to exit: an outage.
    pub fn stop(&self) -> anyhow::Result<()> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            terminate(&mut child)?;
        }
        Ok(())
    }

    /// The janitor: when this process is gone, kills the server it started last (its pid is in
    /// a file, since a restart changes it) and removes the folder.
    fn spawn_janitor(&self) -> anyhow::Result<Child> {
        let script = format!(
            "{CLOSE_INHERITED}\n\
             while kill -0 {me} 2>/dev/null; do sleep 1; done\n\
             kill -9 \"$(cat '{pid}' 2>/dev/null)\" 2>/dev/null\n\
             rm -rf '{dir}'\n",
            me = std::process::id(),
            pid = self.path("pid").display(),
            dir = self.dir.display(),
        );
        janitor(&script, &format!("{}'s janitor", self.name))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // Nothing is left for the janitor to do.
        if let Some(mut j) = self.janitor.take() {
            let _ = j.kill();
            let _ = j.wait();
        }
    }
}
