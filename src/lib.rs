//! bkops: a Kubernetes operator that makes BlueKing operations declarative.
