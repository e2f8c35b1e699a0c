//! The reverse index of `spec.dependsOn`: when a job changes, the jobs that depend on it are
//! reconciled at once (a run waiting for it may start, or must say it stalled), without polling.
//!
//! Fed by every kind's watch: each object's `dependsOn` (as a dependent) and a signature of what
//! dependents look at (generation, annotations, phase, run): a change of that signature, or
//! the object's deletion, wakes its dependents.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::cached::CachedObject;
use crate::api::common::Dependency;

/// A job: kind, namespace, name.
type Job = (&'static str, String, String);

/// A controller's trigger: its kind, the namespace it watches (`None`: all), and where to send
/// the namespace and name of an object to reconcile.
type Waker = (
    &'static str,
    Option<String>,
    mpsc::UnboundedSender<(String, String)>,
);

#[derive(Default)]
struct Index {
    /// Dependency → the jobs that depend on it.
    dependents: HashMap<Job, HashSet<Job>>,
    /// Dependent → its dependencies, to drop its old edges when its spec changes.
    edges: HashMap<Job, Vec<Job>>,
    /// Per job, the signature of what its dependents read.
    signatures: HashMap<Job, u64>,
}

/// Wakes the controllers of dependents.
#[derive(Default)]
pub struct DependencyIndex {
    index: Mutex<Index>,
    /// Each controller's trigger, by kind and the namespace it watches (`None`: all).
    wakers: Mutex<Vec<Waker>>,
}

#[derive(serde::Deserialize)]
struct DependsOnly {
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<Dependency>,
}

fn job_of(kind: &'static str, obj: &CachedObject) -> Option<Job> {
    Some((
        kind,
        obj.metadata.namespace.clone()?,
        obj.metadata.name.clone()?,
    ))
}

fn signature(obj: &CachedObject) -> u64 {
    use std::hash::{Hash, Hasher};
    #[derive(serde::Deserialize, Hash)]
    struct Run {
        key: Option<String>,
        phase: Option<String>,
    }
    #[derive(serde::Deserialize, Hash)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        phase: Option<String>,
        observed_generation: Option<i64>,
        run: Option<Run>,
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut h);
    obj.metadata.annotations.hash(&mut h);
    obj.metadata.deletion_timestamp.is_some().hash(&mut h);
    if let Some(Ok(status)) = obj.status_as::<Status>() {
        status.hash(&mut h);
    }
    h.finish()
}

impl DependencyIndex {
    /// Registers the trigger of the `kind` controller watching `ns` (`None`: all namespaces).
    pub fn waker(
        &self,
        kind: &'static str,
        ns: Option<String>,
    ) -> mpsc::UnboundedReceiver<(String, String)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind, ns, tx));
        rx
    }

    /// Takes in one watch event of `kind`.
    pub fn observe(&self, kind: &'static str, event: &watcher::Event<CachedObject>) {
        let woken = match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => self.applied(kind, obj),
            watcher::Event::Delete(obj) => self.deleted(kind, obj),
            watcher::Event::Init | watcher::Event::InitDone => Vec::new(),
        };
        if woken.is_empty() {
            return;
        }
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for (k, ns, name) in woken {
            for (wk, wns, tx) in wakers.iter() {
                if *wk == k && wns.as_ref().is_none_or(|w| *w == ns) {
                    let _ = tx.send((ns.clone(), name.clone()));
                }
            }
        }
    }

    fn applied(&self, kind: &'static str, obj: &CachedObject) -> Vec<Job> {
        let Some(me) = job_of(kind, obj) else {
            return Vec::new();
        };
        let deps: Vec<Job> = obj
            .spec
            .as_ref()
            .and_then(|raw| serde_json::from_str::<DependsOnly>(raw.get()).ok())
            .map(|d| d.depends_on)
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.kind.as_str(), me.1.clone(), d.name))
            .collect();
        let sig = signature(obj);
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.set_edges(&me, deps);
        let changed = index.signatures.insert(me.clone(), sig) != Some(sig);
        if changed {
            index.dependents_of(&me)
        } else {
            Vec::new()
        }
    }

    fn deleted(&self, kind: &'static str, obj: &CachedObject) -> Vec<Job> {
        let Some(me) = job_of(kind, obj) else {
            return Vec::new();
        };
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.set_edges(&me, Vec::new());
        index.signatures.remove(&me);
        index.dependents_of(&me)
    }

    /// The jobs that depend on `kind` `ns`/`name` (for tests and tools).
    pub fn dependents(&self, kind: &'static str, ns: &str, name: &str) -> Vec<(String, String)> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, String)> = index
            .dependents_of(&(kind, ns.to_owned(), name.to_owned()))
            .into_iter()
            .map(|(k, _, n)| (k.to_owned(), n))
            .collect();
        out.sort();
        out
    }
}

impl Index {
    fn set_edges(&mut self, me: &Job, deps: Vec<Job>) {
        if let Some(old) = self.edges.remove(me) {
            for d in old {
                if let Some(set) = self.dependents.get_mut(&d) {
                    set.remove(me);
                    if set.is_empty() {
                        self.dependents.remove(&d);
                    }
                }
            }
        }
        if deps.is_empty() {
            return;
        }
        for d in &deps {
            self.dependents
                .entry(d.clone())
                .or_default()
                .insert(me.clone());
        }
        self.edges.insert(me.clone(), deps);
    }

    fn dependents_of(&self, job: &Job) -> Vec<Job> {
        self.dependents
            .get(job)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ns: &str, name: &str, spec: &str, status: &str) -> CachedObject {
        let mut o = CachedObject::new(name);
        o.metadata.namespace = Some(ns.into());
        o.spec = Some(serde_json::value::RawValue::from_string(spec.into()).unwrap());
        o.status = Some(serde_json::value::RawValue::from_string(status.into()).unwrap());
        o
    }

    #[test]
    fn a_dependency_change_wakes_its_dependents_once_per_change() {
        let index = DependencyIndex::default();
        let mut rx = index.waker("ProcessJob", Some("ns".into()));
        let restart = obj(
            "ns",
            "restart",
            r#"{"dependsOn":[{"kind":"ProcessJob","name":"release"}]}"#,
            "{}",
        );
        index.observe("ProcessJob", &watcher::Event::Apply(restart.clone()));
        assert_eq!(
            index.dependents("ProcessJob", "ns", "release"),
            vec![("ProcessJob".to_owned(), "restart".to_owned())]
        );
        let release = obj("ns", "release", "{}", r#"{"phase":"Running"}"#);
        index.observe("ProcessJob", &watcher::Event::Apply(release.clone()));
        assert_eq!(rx.try_recv().ok(), Some(("ns".into(), "restart".into())));
        // The same signature again (a progress write): nobody is woken.
        index.observe("ProcessJob", &watcher::Event::Apply(release));
        assert!(rx.try_recv().is_err());
        let done = obj("ns", "release", "{}", r#"{"phase":"Succeeded"}"#);
        index.observe("ProcessJob", &watcher::Event::Apply(done.clone()));
        assert_eq!(rx.try_recv().ok(), Some(("ns".into(), "restart".into())));
        index.observe("ProcessJob", &watcher::Event::Delete(done));
        assert_eq!(rx.try_recv().ok(), Some(("ns".into(), "restart".into())));
        // The dependent drops the dependency: its edge goes.
        let alone = obj("ns", "restart", "{}", "{}");
        index.observe("ProcessJob", &watcher::Event::Apply(alone));
        assert!(index.dependents("ProcessJob", "ns", "release").is_empty());
        // Other namespaces' and kinds' controllers are not woken.
        let other = obj(
            "other",
            "x",
            r#"{"dependsOn":[{"kind":"Taskflow","name":"t"}]}"#,
            "{}",
        );
        index.observe("ProcessJob", &watcher::Event::Apply(other));
        index.observe(
            "Taskflow",
            &watcher::Event::Apply(obj("other", "t", "{}", r#"{"phase":"Failed"}"#)),
        );
        assert!(rx.try_recv().is_err());
    }
}
