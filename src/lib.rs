//! bkops: a Kubernetes operator that makes BlueKing operations declarative.
//!
//! Layers point one way: [`api`] (CRD types) knows nothing of HTTP, [`bk`] (the BlueKing client)
//! knows nothing of Kubernetes, and the run lifecycle sits between them.

pub mod local;
