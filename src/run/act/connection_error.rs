//! Why a job's connection cannot be used.

/// Why a connection cannot be used. Each is reported as `Stalled` with no BlueKing call.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No `connectionRef` and no default connection.
    #[error(
        "no connection: set spec.connectionRef.name or start the operator with --default-connection"
    )]
    NoConnection,
    /// The reference names another namespace.
    #[error(
        "{what} {name:?} is in namespace {other:?}; only the object's own namespace {own:?} may be used"
    )]
    OtherNamespace {
        /// Connection or Secret.
        what: &'static str,
        /// Its name.
        name: String,
        /// The namespace it names.
        other: String,
        /// The object's namespace.
        own: String,
    },
    /// The `BkConnection` does not exist.
    #[error("BkConnection {0:?} not found in this namespace")]
    NotFound(String),
    /// The Secret does not exist.
    #[error("Secret {secret:?} of BkConnection {connection:?} not found in this namespace")]
    SecretNotFound {
        /// The connection.
        connection: String,
        /// The Secret.
        secret: String,
    },
    /// The Secret lacks a key.
    #[error("Secret {secret:?} of BkConnection {connection:?} {problem}")]
    SecretIncomplete {
        /// The connection.
        connection: String,
        /// The Secret.
        secret: String,
        /// What is missing (never a value).
        problem: String,
    },
    /// The connection's spec is invalid.
    #[error("BkConnection {connection:?} is invalid: {problem}")]
    Invalid {
        /// The connection.
        connection: String,
        /// The problems.
        problem: String,
    },
    /// The Kubernetes API failed; try again later.
    #[error("reading BkConnection {connection:?}: {source}")]
    Api {
        /// The connection.
        connection: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

impl ConnectionError {
    /// The condition reason for this problem (stable, CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectionError::NoConnection => "NoConnection",
            ConnectionError::OtherNamespace { .. } => "CrossNamespaceReference",
            ConnectionError::NotFound(_) => "ConnectionNotFound",
            ConnectionError::SecretNotFound { .. } => "SecretNotFound",
            ConnectionError::SecretIncomplete { .. } => "SecretIncomplete",
            ConnectionError::Invalid { .. } => "ConnectionInvalid",
            ConnectionError::Api { .. } => "ConnectionLookupFailed",
        }
    }

    /// Whether trying again later may help without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectionError::Api { .. })
    }
}
