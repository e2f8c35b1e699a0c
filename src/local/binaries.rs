//! Finding, and if need be provisioning, the `kube-apiserver`, `etcd` and `kubectl` binaries.

use std::collections::VecDeque;
use std::fs::{File, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::LocalError;

/// The Kubernetes version the provisioning script builds and the tests target.
pub const K8S_VERSION: &str = "1.20.2";

/// Embedded so that an installed `bkops` (with no source tree beside it) can provision too.
const PROVISION_SCRIPT: &str = include_str!("../../hack/provision-control-plane.sh");

/// How many lines of the script's output a failure report keeps.
const OUTPUT_TAIL_LINES: usize = 30;

/// Paths to the control-plane binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    kube_apiserver: PathBuf,
    etcd: PathBuf,
    kubectl: Option<PathBuf>,
}

impl Binaries {
    /// The binaries in `dir`: `kube-apiserver` and `etcd` must be there, `kubectl` may be.
    pub fn from_dir(dir: &Path) -> Result<Self, LocalError> {
        let find = |name: &str| Some(dir.join(name)).filter(|path| is_executable(path));
        let missing: Vec<&str> = ["kube-apiserver", "etcd"]
            .into_iter()
            .filter(|name| find(name).is_none())
            .collect();
        match (find("kube-apiserver"), find("etcd")) {
            (Some(kube_apiserver), Some(etcd)) => Ok(Self {
                kube_apiserver,
                etcd,
                kubectl: find("kubectl"),
            }),
            _ => Err(LocalError::BinariesNotFound {
                detail: format!(
                    "{} has no executable {}",
                    dir.display(),
                    missing.join(" or ")
                ),
                hint: String::new(),
            }),
        }
    }

    /// The binaries as the environment describes them, without provisioning: see [`Locator::from_env`].
    pub fn locate() -> Result<Self, LocalError> {
        Locator::from_env().locate()
    }

    /// The binaries as the environment describes them, provisioning them into the cache folder
    /// first when they are missing: see [`Locator::provision`]. Blocks, possibly for many minutes.
    pub fn provision() -> Result<Self, LocalError> {
        Locator::from_env().provision()
    }

    /// The `kube-apiserver` binary.
    pub fn kube_apiserver(&self) -> &Path {
        &self.kube_apiserver
    }

    /// The `etcd` binary.
    pub fn etcd(&self) -> &Path {
        &self.etcd
    }

    /// The `kubectl` binary, when there is one beside the others.
    pub fn kubectl(&self) -> Option<&Path> {
        self.kubectl.as_deref()
    }
}

/// Where to look for the binaries and whether to provision them.
///
/// [`Locator::from_env`] reads the environment; the setters exist so callers (and tests) can decide
/// without changing the process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    assets: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    allow_provision: bool,
}

impl Locator {
    /// From the environment:
    /// - `KUBEBUILDER_ASSETS`: a folder with `kube-apiserver` and `etcd` (and optionally `kubectl`);
    ///   when set, only this folder is used and nothing is provisioned.
    /// - `BKOPS_CACHE_DIR`, else `$HOME/.cache/bkops`: the cache; binaries live in
    ///   `<cache>/k8s-1.20.2/bin`.
    /// - `BKOPS_NO_PROVISION` set to anything but `0`/`false`/empty: never run the provisioning script.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let cache_dir = var("BKOPS_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache/bkops")));
        let no_provision = var("BKOPS_NO_PROVISION")
            .is_some_and(|value| value != "0" && !value.eq_ignore_ascii_case("false"));
        Self {
            assets: var("KUBEBUILDER_ASSETS").map(PathBuf::from),
            cache_dir,
            allow_provision: !no_provision,
        }
    }

    /// Use this folder instead of the cache (like `KUBEBUILDER_ASSETS`); `None` to use the cache.
    pub fn assets(mut self, dir: Option<PathBuf>) -> Self {
        self.assets = dir;
        self
    }

    /// Use this cache folder.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Whether [`Locator::provision`] may run the provisioning script.
    pub fn allow_provision(mut self, allow: bool) -> Self {
        self.allow_provision = allow;
        self
    }

    /// The folder in the cache where provisioned binaries live.
    pub fn cache_bin_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|cache| cache.join(format!("k8s-{K8S_VERSION}")).join("bin"))
    }

    /// Finds the binaries without provisioning anything.
    pub fn locate(&self) -> Result<Binaries, LocalError> {
        if let Some(assets) = &self.assets {
            return Binaries::from_dir(assets).map_err(|err| {
                not_found(
                    err,
                    format!(
                        "KUBEBUILDER_ASSETS is set to {}: point it at a folder holding kube-apiserver \
                         and etcd (kubectl optional), or unset it to use the cache folder",
                        assets.display()
                    ),
                )
            });
        }
        let Some(bin) = self.cache_bin_dir() else {
            return Err(LocalError::BinariesNotFound {
                detail: "KUBEBUILDER_ASSETS is not set and there is no cache folder \
                         (neither BKOPS_CACHE_DIR nor HOME is set)"
                    .into(),
                hint: fix_hint(),
            });
        };
        Binaries::from_dir(&bin).map_err(|err| {
            let hint = if self.allow_provision {
                fix_hint()
            } else {
                format!(
                    "{} (automatic provisioning is off: BKOPS_NO_PROVISION is set)",
                    fix_hint()
                )
            };
            not_found(err, format!("KUBEBUILDER_ASSETS is not set. {hint}"))
        })
    }

    /// Finds the binaries, provisioning them into the cache folder first when they are missing
    /// (and provisioning is allowed and `KUBEBUILDER_ASSETS` is not set).
    ///
    /// Provisioning runs the embedded `hack/provision-control-plane.sh` (needs root and apt-get on
    /// Debian bookworm; 10-20 minutes on 2 cores) with its output streamed to stderr. It holds an
    /// exclusive lock on `<cache>/provision.lock`, so processes that start at once provision only
    /// once: the others wait, then find the binaries. Blocks the calling thread.
    pub fn provision(&self) -> Result<Binaries, LocalError> {
        let err = match self.locate() {
            Ok(binaries) => return Ok(binaries),
            Err(err) => err,
        };
        if self.assets.is_some() || !self.allow_provision {
            return Err(err);
        }
        let Some(cache) = &self.cache_dir else {
            return Err(err);
        };
        std::fs::create_dir_all(cache).map_err(|e| {
            LocalError::io(format!("creating the cache folder {}", cache.display()), e)
        })?;
        let lock_path = cache.join("provision.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LocalError::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                crate::errln!(
                    "bkops: another process is provisioning the control plane; waiting for {}",
                    lock_path.display()
                );
                lock.lock()
                    .map_err(|e| LocalError::io(format!("locking {}", lock_path.display()), e))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(LocalError::io(
                    format!("locking {}", lock_path.display()),
                    e,
                ));
            }
        }
        // Whoever held the lock before us may have finished the job.
        if let Ok(binaries) = self.locate() {
            return Ok(binaries);
        }
        crate::errln!(
            "bkops: provisioning kube-apiserver {K8S_VERSION} and etcd into {} (takes 10-20 minutes)",
            cache.display()
        );
        run_script(cache)?;
        // The lock is released when `lock` drops, after the binaries are in place.
        let found = self.locate();
        drop(lock);
        found
    }
}

/// Runs the embedded provisioning script, streaming its output to stderr and keeping its tail.
fn run_script(cache: &Path) -> Result<(), LocalError> {
    // stdout goes to our stderr: progress is diagnostics, and test harnesses keep stdout for results.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| LocalError::io("duplicating stderr", e))?;
    let mut child = Command::new("bash")
        // `bash -c` rather than `bash -s`: the script's apt-get would otherwise read the script.
        .arg("-c")
        .arg(PROVISION_SCRIPT)
        .arg("provision-control-plane.sh")
        .arg(cache)
        // We hold the script's lock already; it would wait for us forever.
        .env("BKOPS_PROVISION_LOCK_HELD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LocalError::MissingTool {
            program: "bash",
            purpose: "run the provisioning script",
            source,
        })?;
    let mut tail = VecDeque::with_capacity(OUTPUT_TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        let mut out = std::io::stderr();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Progress is best effort: a closed stderr must not stop provisioning.
            let _ = writeln!(out, "{line}");
            if tail.len() == OUTPUT_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| LocalError::io("waiting for the provisioning script", e))?;
    if status.success() {
        return Ok(());
    }
    Err(LocalError::Provision {
        status: status.to_string(),
        output: Vec::from(tail).join("\n"),
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn fix_hint() -> String {
    format!(
        "Set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd, or provision \
         Kubernetes {K8S_VERSION} into the cache by running `hack/provision-control-plane.sh` as root \
         on Debian bookworm"
    )
}

fn not_found(err: LocalError, hint: String) -> LocalError {
    match err {
        LocalError::BinariesNotFound { detail, .. } => {
            LocalError::BinariesNotFound { detail, hint }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(dir: &Path, name: &str) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn assets_folder_wins_and_kubectl_is_optional() {
        let assets = tempfile::tempdir().unwrap();
        executable(assets.path(), "kube-apiserver");
        executable(assets.path(), "etcd");
        let found = Locator::from_env()
            .assets(Some(assets.path().into()))
            .locate()
            .unwrap();
        assert_eq!(found.kube_apiserver(), assets.path().join("kube-apiserver"));
        assert_eq!(found.kubectl(), None);
    }

    #[test]
    fn missing_binaries_name_the_fix() {
        let cache = tempfile::tempdir().unwrap();
        let err = Locator::from_env()
            .assets(None)
            .cache_dir(cache.path())
            .allow_provision(false)
            .provision()
            .unwrap_err()
            .to_string();
        assert!(err.contains("KUBEBUILDER_ASSETS"), "{err}");
        assert!(err.contains("BKOPS_NO_PROVISION"), "{err}");
        assert!(err.contains("kube-apiserver or etcd"), "{err}");
        // Nothing was created: provisioning was off.
        assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none());
    }

    #[test]
    fn non_executable_file_does_not_count() {
        let assets = tempfile::tempdir().unwrap();
        executable(assets.path(), "etcd");
        std::fs::write(assets.path().join("kube-apiserver"), "").unwrap();
        let err = Binaries::from_dir(assets.path()).unwrap_err().to_string();
        assert!(err.contains("no executable kube-apiserver"), "{err}");
    }
}
