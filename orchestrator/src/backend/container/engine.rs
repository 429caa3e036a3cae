//! The Docker engine, as fame finds and talks to it: `DOCKER_HOST` or the default socket, through
//! the Engine API (bollard) on a small tokio runtime of its own, so the rest of fame stays
//! blocking code.
//!
//! Connecting says plainly what is wrong and how to fix it: no engine (and how to start one
//! where there is no systemd), a socket without permission, a stale socket nobody listens on.

use anyhow::{anyhow, Context, Result};
use bollard::Docker;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// The socket of a Docker engine when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long one Engine API call may take before fame gives up on the engine.
const API_TIMEOUT_SECS: u64 = 120;

/// How to get an engine on Debian, for error messages.
pub const HOW_TO_START: &str = "install Docker with `apt-get install docker.io` and start it: `systemctl start docker`, or where there is no systemd `dockerd >/var/log/dockerd.log 2>&1 &` (see README, \"Container nodes\")";

/// A connected engine.
pub struct Engine {
    rt: tokio::runtime::Runtime,
    pub docker: Docker,
    /// Where it was found (`unix:///var/run/docker.sock`), for messages.
    pub host: String,
}

/// Where the engine is: `DOCKER_HOST`, else the default socket; and how that was decided.
pub fn endpoint() -> (String, &'static str) {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => (h, "DOCKER_HOST"),
        _ => (format!("unix://{DEFAULT_SOCKET}"), "the default socket"),
    }
}

impl Engine {
    /// Connects to the engine and agrees on an API version with it.
    pub fn connect() -> Result<Engine> {
        let (host, how) = endpoint();
        if let Some(path) = host.strip_prefix("unix://") {
            check_socket(&PathBuf::from(path), how)?;
        }
        // One worker: nodes start from several threads at once, each blocking on its own call.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the runtime that talks to Docker")?;
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| anyhow!("DOCKER_HOST={host}: {e}; use unix:///PATH or tcp://HOST:PORT"))?
            .with_timeout(Duration::from_secs(API_TIMEOUT_SECS));
        let docker = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await
            })
            .map_err(|_| anyhow!("the Docker engine at {host} ({how}) did not answer within 10 s; is dockerd hung? {HOW_TO_START}"))?
            .map_err(|e| anyhow!("the Docker engine at {host} ({how}) does not answer: {e}; {HOW_TO_START}"))?;
        Ok(Engine { rt, docker, host })
    }

    /// Runs an Engine API future to its end.
    pub fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// A unix socket of an engine: that it exists, that we may use it, that somebody listens.
fn check_socket(path: &std::path::Path, how: &str) -> Result<()> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "no Docker engine: {} ({how}) does not exist. The container backend needs one: {HOW_TO_START}; or set DOCKER_HOST to an engine's socket",
                path.display()
            ),
            std::io::ErrorKind::PermissionDenied => anyhow!(
                "the Docker engine's socket {} ({how}) refuses this user (permission denied): run fame as root, or add the user to the `docker` group (`usermod -aG docker $USER`, then log in again)",
                path.display()
            ),
            std::io::ErrorKind::ConnectionRefused => anyhow!(
                "nothing listens on the Docker socket {} ({how}): dockerd is not running (a socket left by a stopped one); {HOW_TO_START}",
                path.display()
            ),
            _ => anyhow!(
                "cannot reach the Docker engine at {} ({how}): {e}; {HOW_TO_START}",
                path.display()
            ),
        }),
    }
}

/// Whether an Engine API error says the object does not exist.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The message of an Engine API error, without bollard's wrapping.
pub fn message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_name_the_socket_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("docker.sock");
        let e = check_socket(&missing, "DOCKER_HOST")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not exist") && e.contains("docker.io"),
            "{e}"
        );
        // A socket file nobody listens on any more.
        let l = std::os::unix::net::UnixListener::bind(&missing).unwrap();
        drop(l);
        let e = check_socket(&missing, "DOCKER_HOST")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing listens"), "{e}");
    }
}
