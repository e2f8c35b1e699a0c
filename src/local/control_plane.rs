//! Starting etcd and kube-apiserver, and handing out clients for them.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::LocalError;
use super::binaries::Binaries;
use super::process::{self, Supervised};

/// The admin user's name in the token file; it is in `system:masters`.
const ADMIN_USER: &str = "bkops-admin";
/// Tries when a port picked as free was taken before the server bound it.
const START_ATTEMPTS: u32 = 3;
/// Lines of each log quoted in a startup error.
const LOG_TAIL_LINES: usize = 25;

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// The binaries to run; `None` finds them with [`Binaries::provision`] (which reads
    /// `KUBEBUILDER_ASSETS`, `BKOPS_CACHE_DIR` and `BKOPS_NO_PROVISION`).
    pub binaries: Option<Binaries>,
    /// The folder for etcd data, certificates, logs and the kubeconfig. `None`: a fresh folder under
    /// the system temp dir, removed when the control plane stops. `Some`: created if need be and
    /// kept, so a later start finds the same data (for `bkops demo --keep`).
    pub dir: Option<PathBuf>,
    /// How long to wait for the API server to report ready.
    pub startup_timeout: Duration,
    /// More `kube-apiserver` flags, appended after the defaults (a later flag wins).
    pub extra_apiserver_args: Vec<String>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            binaries: None,
            dir: None,
            // Generous: on 2 busy cores (a parallel cargo build) 1.20 can take 20 s to be ready.
            startup_timeout: Duration::from_secs(90),
            extra_apiserver_args: Vec::new(),
        }
    }
}

/// A running etcd + kube-apiserver pair on loopback, with an admin token.
///
/// Both processes stop when this is dropped (blocking for up to a few seconds; prefer
/// [`ControlPlane::stop`] in async code) and also when this process ends in any way, even
/// SIGKILL, or when the value sits in a `static` that is never dropped. A temporary folder is removed
/// with them.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    keep_dir: bool,
    apiserver: Option<Supervised>,
    etcd: Option<Supervised>,
    server_url: String,
    kubeconfig: PathBuf,
    kubectl: Option<PathBuf>,
    config: kube::Config,
    startup: Duration,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    ///
    /// Finds (or provisions, see [`ControlPlaneOptions::binaries`]) the binaries first. On failure
    /// the error carries the tails of both logs. Needs `openssl` (to make the service-account key)
    /// and `sh`.
    pub async fn start(options: ControlPlaneOptions) -> Result<Self, LocalError> {
        let began = Instant::now();
        let binaries = match options.binaries.clone() {
            Some(binaries) => binaries,
            None => tokio::task::spawn_blocking(Binaries::provision)
                .await
                .map_err(|e| LocalError::io("provisioning", std::io::Error::other(e)))??,
        };
        let (dir, keep_dir) = match &options.dir {
            Some(dir) => (absolute(dir)?, true),
            None => (fresh_temp_dir()?, false),
        };
        create_dir(&dir)?;
        let result = Self::start_in(&binaries, &dir, keep_dir, &options).await;
        match result {
            Ok(mut control_plane) => {
                control_plane.startup = began.elapsed();
                tracing::info!(
                    server = %control_plane.server_url,
                    dir = %dir.display(),
                    seconds = control_plane.startup.as_secs_f32(),
                    "local control plane ready"
                );
                Ok(control_plane)
            }
            Err(err) => {
                if !keep_dir {
                    // Best effort: the error matters more than a leftover temp folder.
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(err)
            }
        }
    }

    async fn start_in(
        binaries: &Binaries,
        dir: &Path,
        keep_dir: bool,
        options: &ControlPlaneOptions,
    ) -> Result<Self, LocalError> {
        let certs = dir.join("certs");
        create_dir(&certs)?;
        let sa_key = dir.join("service-account.key");
        if !sa_key.exists() {
            generate_rsa_key(&sa_key)?;
        }
        let token = format!("{:032x}", rand::random::<u128>());
        let tokens = dir.join("tokens.csv");
        write_private(
            &tokens,
            &format!("{token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"),
        )?;
        let minor = apiserver_minor_version(binaries.kube_apiserver());
        let cleanup = (!keep_dir).then_some(dir);

        let mut attempt = 1;
        loop {
            let [etcd_client, etcd_peer, secure_port] = free_ports()?;
            let etcd_args = etcd_args(dir, etcd_client, etcd_peer);
            let apiserver_log = dir.join("kube-apiserver.log");
            let apiserver_pid = process::pid_file(&apiserver_log);
            // A stale pid from an earlier run in a kept folder must not delay stopping etcd.
            let _ = std::fs::remove_file(&apiserver_pid);
            let etcd = Supervised::spawn(
                "etcd",
                binaries.etcd(),
                &etcd_args,
                dir.join("etcd.log"),
                cleanup,
                Some(&apiserver_pid),
            )?;
            let mut apiserver_args = apiserver_args(dir, etcd_client, secure_port, minor);
            apiserver_args.extend(options.extra_apiserver_args.iter().cloned());
            let apiserver = Supervised::spawn(
                "kube-apiserver",
                binaries.kube_apiserver(),
                &apiserver_args,
                apiserver_log,
                None,
                None,
            )?;
            let server_url = format!("https://127.0.0.1:{secure_port}");
            let kubeconfig = dir.join("kubeconfig");
            write_kubeconfig(
                &kubeconfig,
                &server_url,
                &certs.join("apiserver.crt"),
                &token,
            )?;
            let mut control_plane = Self {
                dir: dir.to_path_buf(),
                keep_dir: true, // whoever called us owns the folder until we return
                apiserver: Some(apiserver),
                etcd: Some(etcd),
                server_url,
                kubeconfig,
                kubectl: binaries.kubectl().map(Path::to_path_buf),
                config: kube::Config::new(http::Uri::from_static("https://127.0.0.1")),
                startup: Duration::ZERO,
            };
            match control_plane.wait_ready(options.startup_timeout).await {
                Ok(config) => {
                    control_plane.config = config;
                    control_plane.keep_dir = keep_dir;
                    return Ok(control_plane);
                }
                Err(err) => {
                    control_plane.stop_processes().await;
                    let port_taken = err.to_string().contains("address already in use");
                    if !port_taken || attempt == START_ATTEMPTS {
                        return Err(err);
                    }
                    tracing::warn!(
                        attempt,
                        "a port picked as free was taken; retrying with new ports"
                    );
                    attempt += 1;
                }
            }
        }
    }

    /// Polls `/readyz` until it answers `ok`; fails early when a server exits.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<kube::Config, LocalError> {
        let deadline = Instant::now() + timeout;
        let mut probe: Option<kube::Client> = None;
        let mut last_problem = String::from("no answer yet");
        loop {
            let exited = [&mut self.etcd, &mut self.apiserver]
                .into_iter()
                .flatten()
                .find_map(|server| server.exited().map(|status| (server.name(), status)));
            if let Some((name, status)) = exited {
                return Err(self.startup_error(format!("{name} exited during startup ({status})")));
            }
            if Instant::now() >= deadline {
                return Err(self.startup_error(format!(
                    "kube-apiserver was not ready after {} s (last: {last_problem})",
                    timeout.as_secs()
                )));
            }
            // The API server writes its self-signed certificate at startup; the client trusts it.
            if probe.is_none() && self.dir.join("certs/apiserver.crt").exists() {
                match self.load_config().await {
                    Ok(config) => {
                        probe = Some(kube::Client::try_from(config).map_err(LocalError::Client)?);
                    }
                    // Possibly read while half written; try again.
                    Err(err) => last_problem = err.to_string(),
                }
            }
            if let Some(client) = &probe {
                match readyz(client).await {
                    Ok(()) => break,
                    Err(problem) => last_problem = problem,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(probe);
        self.load_config().await
    }

    async fn load_config(&self) -> Result<kube::Config, LocalError> {
        let kubeconfig_error = |source| LocalError::Kubeconfig {
            path: self.kubeconfig.clone(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(kubeconfig_error)?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(kubeconfig_error)
    }

    fn startup_error(&self, reason: String) -> LocalError {
        let logs = [&self.etcd, &self.apiserver]
            .into_iter()
            .flatten()
            .map(|server| {
                format!(
                    "--- last lines of {} ---\n{}",
                    server.log().display(),
                    log_tail(server.log(), LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        LocalError::Startup { reason, logs }
    }

    /// A client authenticated as an admin (`system:masters`).
    ///
    /// Must be called inside a Tokio runtime, and the client used only in that runtime: build one per
    /// test (each `#[tokio::test]` has its own runtime) rather than sharing one.
    pub fn client(&self) -> Result<kube::Client, LocalError> {
        kube::Client::try_from(self.config()).map_err(LocalError::Client)
    }

    /// A client that acts as `user` in `groups`, by impersonation from the admin, for RBAC tests:
    /// e.g. `client_as("system:serviceaccount:ns:name", &["system:serviceaccounts"])`. Same runtime
    /// rule as [`ControlPlane::client`].
    pub fn client_as(&self, user: &str, groups: &[&str]) -> Result<kube::Client, LocalError> {
        kube::Client::try_from(self.config_as(user, groups)).map_err(LocalError::Client)
    }

    /// The admin client configuration; cheap to clone and free of any runtime.
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// The client configuration of [`ControlPlane::client_as`].
    pub fn config_as(&self, user: &str, groups: &[&str]) -> kube::Config {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            (!groups.is_empty()).then(|| groups.iter().map(|&group| group.to_owned()).collect());
        config
    }

    /// The admin kubeconfig (for `kubectl --kubeconfig`, or `KUBECONFIG`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl` beside the other binaries, if there is one.
    pub fn kubectl_path(&self) -> Option<&Path> {
        self.kubectl.as_deref()
    }

    /// A `kubectl` command already pointed at this control plane, if there is a `kubectl`.
    pub fn kubectl(&self) -> Option<Command> {
        self.kubectl.as_ref().map(|kubectl| {
            let mut command = Command::new(kubectl);
            command.env("KUBECONFIG", &self.kubeconfig);
            command
        })
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The folder holding etcd data, certificates, logs (`etcd.log`, `kube-apiserver.log`) and
    /// the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`ControlPlane::start`] took, including finding the binaries.
    pub fn startup_duration(&self) -> Duration {
        self.startup
    }

    /// Process ids of etcd and kube-apiserver (for diagnostics).
    pub fn process_ids(&self) -> Vec<u32> {
        [&self.etcd, &self.apiserver]
            .into_iter()
            .flatten()
            .filter_map(Supervised::server_pid)
            .collect()
    }

    /// Stops both servers (SIGTERM, then SIGKILL after a grace period) and removes a temporary
    /// folder.
    pub async fn stop(mut self) -> Result<(), LocalError> {
        self.stop_processes().await;
        self.remove_dir()
    }

    /// Leaves both servers running after this process ends, and returns the folder (which is then
    /// kept even if temporary). Its `kubeconfig` reaches them; [`stop_command`] stops them.
    pub fn detach(mut self) -> PathBuf {
        for server in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            server.detach();
        }
        self.keep_dir = true;
        self.dir.clone()
    }

    /// The API server first: it stops in about 2 s, but hangs until killed once etcd is gone.
    async fn stop_processes(&mut self) {
        for mut server in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            server.request_stop();
            server.wait().await;
        }
    }

    fn remove_dir(&mut self) -> Result<(), LocalError> {
        if self.keep_dir {
            return Ok(());
        }
        self.keep_dir = true;
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalError::io(
                format!("removing {}", self.dir.display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for mut server in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            server.request_stop();
            server.wait_blocking();
        }
        // Nothing to report to in drop; the supervisor's own cleanup is the fallback.
        let _ = self.remove_dir();
    }
}

/// `Ok` when `/readyz` answers `ok`; else what it said instead.
async fn readyz(client: &kube::Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|err| err.to_string())?;
    // A starting server may accept the connection long before it answers.
    match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
        Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
        Ok(Ok(body)) => Err(body),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("/readyz did not answer within 5 s".into()),
    }
}

fn etcd_args(dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=bkops".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=bkops={peer}"),
    ]
}

fn apiserver_args(dir: &Path, etcd_port: u16, secure_port: u16, minor: Option<u32>) -> Vec<String> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        format!("--cert-dir={}", path("certs")),
        format!("--secure-port={secure_port}"),
        "--bind-address=127.0.0.1".into(),
        // Also puts 127.0.0.1 in the self-signed certificate, which is what the client checks.
        "--advertise-address=127.0.0.1".into(),
        format!("--token-auth-file={}", path("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", path("service-account.key")),
        format!(
            "--service-account-signing-key-file={}",
            path("service-account.key")
        ),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        // No controller-manager creates the `default` service account this plugin demands of pods.
        "--disable-admission-plugins=ServiceAccount".into(),
    ];
    // Before 1.24 an unauthenticated port 8080 opens by default, and would clash between
    // control planes; 1.24 removed the flag.
    if minor.is_none_or(|minor| minor < 24) {
        args.push("--insecure-port=0".into());
    }
    args
}

/// The minor version `kube-apiserver --version` reports (`Kubernetes v1.20.2`), if it can tell.
fn apiserver_minor_version(apiserver: &Path) -> Option<u32> {
    let output = Command::new(apiserver)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v1."))?;
    version.split('.').next()?.parse().ok()
}

/// Distinct ports that were free a moment ago (held together so they differ).
fn free_ports<const N: usize>() -> Result<[u16; N], LocalError> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LocalError::io("finding a free loopback port", e))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| LocalError::io("finding a free loopback port", e))?
            .port();
    }
    Ok(ports)
}

fn generate_rsa_key(path: &Path) -> Result<(), LocalError> {
    let output = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(path)
        .arg("2048")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LocalError::MissingTool {
            program: "openssl",
            purpose: "generate the service-account signing key",
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalError::io(
        format!("openssl genrsa -out {}", path.display()),
        std::io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
    ))
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) -> Result<(), LocalError> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bkops-local", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [{"name": "bkops-local", "context": {
            "cluster": "bkops-local",
            "user": ADMIN_USER,
            "namespace": "default",
        }}],
        "current-context": "bkops-local",
    });
    let text = serde_yaml::to_string(&kubeconfig).map_err(|e| {
        LocalError::io(
            format!("writing {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    write_private(path, &text)
}

/// Writes a file only its owner can read: these hold the admin token.
fn write_private(path: &Path, contents: &str) -> Result<(), LocalError> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|e| LocalError::io(format!("writing {}", path.display()), e))
}

fn create_dir(dir: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))
}

fn absolute(dir: &Path) -> Result<PathBuf, LocalError> {
    std::path::absolute(dir).map_err(|e| LocalError::io(format!("resolving {}", dir.display()), e))
}

fn fresh_temp_dir() -> Result<PathBuf, LocalError> {
    let dir = std::env::temp_dir().join(format!(
        "bkops-cp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&dir)
        .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// A shell command that stops the control plane detached in `dir`: kube-apiserver first, and etcd
/// only once kube-apiserver has exited (it hangs for about 30 s once etcd is gone). It waits for
/// the exit rather than for a fixed time, since a loaded machine drains requests for longer.
pub fn stop_command(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "kill $(cat {dir}/kube-apiserver.pid); tail --pid=$(cat {dir}/kube-apiserver.pid) -f /dev/null; \
         kill $(cat {dir}/etcd.pid)"
    )
}

#[cfg(test)]
mod tests;
