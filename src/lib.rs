//! bkops: a Kubernetes operator that makes BlueKing operations declarative.
//!
//! Layers point one way: [`api`] (CRD types) knows nothing of HTTP, [`bk`] (the BlueKing client)
//! knows nothing of Kubernetes, and the run lifecycle ([`run`]) sits between them; [`controller`]
//! wires it to Kubernetes. [`sim`] is the BlueKing simulator and [`local`] the local control
//! plane used by the tests and [`demo`] (`bkops demo`); [`bench`] is the load benchmark.
//! [`output`] is how the commands print; [`limits`] holds the upstream length limits that both
//! the CRD types and the run lifecycle follow.

pub mod api;
pub mod bench;
pub mod bk;
pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod demo;
pub mod kubectl;
pub mod limits;
pub mod local;
pub mod output;
pub mod plan;
pub mod run;
pub mod schema;
pub mod sim;
