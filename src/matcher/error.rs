//! `MatcherError`, what can go wrong behind the `Matcher` trait on either side, and
//! `codes`, the machine-readable codes the server sends with each error and the remote
//! client maps back. A leaf: the store, the galleries, both matchers and the server use it.

use thiserror::Error;

use crate::he::{HeError, TemplateId};

impl MatcherError {
    /// The machine-readable code the server sends with this error (`{"code": ...}`), and
    /// the remote client maps back; English text is for people only.
    pub fn code(&self) -> &'static str {
        match self {
            MatcherError::UnknownId(_) => codes::UNKNOWN_TEMPLATE,
            MatcherError::DuplicateId(_) => codes::DUPLICATE_ID,
            MatcherError::BadId(_) => codes::BAD_ID,
            MatcherError::GalleryFull { .. } => codes::GALLERY_FULL,
            MatcherError::TenantQuota { .. } => codes::TENANT_QUOTA,
            MatcherError::MemoryBudget { .. } => codes::MEMORY_BUDGET,
            MatcherError::InviteRequired { .. } => codes::INVITE_REQUIRED,
            MatcherError::InviteInvalid { .. } => codes::INVITE_INVALID,
            MatcherError::LabelTooLarge { .. } => codes::LABEL_TOO_LARGE,
            MatcherError::BadInput { .. } => codes::BAD_INPUT,
            MatcherError::GalleryParams { .. } => codes::GALLERY_PARAMS,
            MatcherError::Crypto(HeError::TooLarge { .. }) => codes::TOO_LARGE,
            MatcherError::Crypto(HeError::UnknownTemplate(_)) => codes::UNKNOWN_TEMPLATE,
            MatcherError::Crypto(HeError::DuplicateTemplate(_)) => codes::DUPLICATE_ID,
            MatcherError::Crypto(HeError::InvalidId(_)) => codes::BAD_ID,
            MatcherError::Crypto(_) => codes::BAD_CIPHERTEXT,
            MatcherError::Unauthorized { .. } => codes::UNAUTHORIZED,
            MatcherError::Busy { .. } => codes::BUSY,
            MatcherError::AdminUnauthorized { .. } => codes::ADMIN_UNAUTHORIZED,
            _ => codes::INTERNAL,
        }
    }
}

/// Which record of the store a [`MatcherError::StoreDamaged`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredRecord {
    /// A block's record (its number).
    Block(u64),
    /// A template's slot row (its id).
    Slot(TemplateId),
}

impl std::fmt::Display for StoredRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredRecord::Block(b) => write!(f, "block {b}"),
            StoredRecord::Slot(id) => write!(f, "the slot row of template {id}"),
        }
    }
}

/// Error codes of the server's JSON errors (`{"error": text, "code": CODE}`).
pub mod codes {
    pub const UNKNOWN_TEMPLATE: &str = "unknown_template";
    pub const DUPLICATE_ID: &str = "duplicate_id";
    pub const BAD_ID: &str = "bad_id";
    pub const GALLERY_FULL: &str = "gallery_full";
    pub const LABEL_TOO_LARGE: &str = "label_too_large";
    pub const BAD_INPUT: &str = "bad_input";
    pub const BAD_CIPHERTEXT: &str = "bad_ciphertext";
    pub const TOO_LARGE: &str = "too_large";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const TENANT_LIMIT: &str = "tenant_limit";
    /// 503: every identify slot and its queue are taken; retry after `retry_after` s.
    pub const BUSY: &str = "busy";
    /// 429: this tenant's request rate is above the server's limit.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 408: the request (body and work) took longer than the server allows.
    pub const TIMEOUT: &str = "timeout";
    /// 409: the tenant's byte quota would be exceeded (`max` = bytes).
    pub const TENANT_QUOTA: &str = "tenant_quota";
    /// 507: the server's memory budget would be exceeded (`max` = bytes).
    pub const MEMORY_BUDGET: &str = "memory_budget";
    /// 403: this server registers tenants with an invitation code only.
    pub const INVITE_REQUIRED: &str = "invite_required";
    /// 403: the invitation code is unknown or was used already.
    pub const INVITE_INVALID: &str = "invite_invalid";
    /// 401: an admin route without the right admin token.
    pub const ADMIN_UNAUTHORIZED: &str = "admin_unauthorized";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const INTERNAL: &str = "internal";
    pub const ERASE_REQUIRED: &str = "erase_required";
    /// 409: the gallery holds templates of other parameters than the request's
    /// (`params_version`: the gallery's).
    pub const GALLERY_PARAMS: &str = "gallery_params";
}

/// Matcher errors; each message says what happened, with its numbers. What to do about
/// it is the edge's to say: the command line (`blindface`) and the app each add their
/// own hint from the variant.
#[derive(Debug, Error)]
pub enum MatcherError {
    #[error("no template with id {0} in this gallery")]
    UnknownId(TemplateId),
    #[error("a template with id {0} is already enrolled")]
    DuplicateId(TemplateId),
    #[error("template id {0} is out of range (ids lie in [1, 2^53))")]
    BadId(TemplateId),
    #[error("the matcher's state was damaged by an earlier failure; restart it")]
    Poisoned,
    #[error("the gallery is full ({max} templates)")]
    GalleryFull { max: usize },
    #[error("the label is {got} bytes, more than the {max} allowed; use a shorter name")]
    LabelTooLarge { got: usize, max: usize },
    #[error("invalid {what}: {detail}")]
    BadInput { what: &'static str, detail: String },
    /// A gallery's parameters are fixed by its first template: a template or probe of
    /// other parameters (a key of another version) can be neither added nor matched.
    #[error("this gallery holds templates of parameters v{gallery}, and the request's ciphertext is of parameters v{given}: they cannot be compared")]
    GalleryParams { gallery: u16, given: u16 },
    #[error(transparent)]
    Crypto(#[from] HeError),
    #[error("the store {path} is in use by another blindface process")]
    StoreLocked { path: String },
    #[error("store {path}: {detail}; check the disk and the directory's permissions")]
    Store { path: String, detail: String },
    /// A record of the store does not match its checksum: the file was damaged. No
    /// answer is computed from it.
    #[error("store {path}: {record} of tenant {tenant:?} is damaged (its checksum does not match); restore the store from a backup")]
    StoreDamaged {
        path: String,
        tenant: String,
        record: StoredRecord,
    },
    /// The file is not a blindface store (empty, truncated, overwritten, another redb
    /// file); it was left as it was, and no new store is created in its place.
    #[error("{path} is not a valid blindface store ({detail}); it was left unchanged: restore it from a backup, or move it away to start a new, empty store")]
    NotAStore { path: String, detail: String },
    #[error("cannot reach the matcher at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the server at {url} speaks HTTPS, not plain HTTP: use {https_url}")]
    SpeaksHttps { url: String, https_url: String },
    #[error("the matcher at {url} rejected our access token ({message}); delete {token_file} to register again")]
    Unauthorized {
        url: String,
        token_file: String,
        message: String,
    },
    #[error("the matcher at {url} is busy ({message}); try again in {} s", retry_after.unwrap_or(1))]
    Busy {
        url: String,
        message: String,
        /// Seconds the server asked us to wait (its `Retry-After`).
        retry_after: Option<u64>,
    },
    #[error("the gallery has reached its byte quota ({max_bytes} bytes of encrypted templates)")]
    TenantQuota { max_bytes: u64 },
    #[error("the matcher's memory budget ({budget} bytes) is used up; nothing was changed")]
    MemoryBudget { budget: u64 },
    #[error("the matcher at {url} registers galleries by invitation only")]
    InviteRequired { url: String },
    #[error("the matcher at {url} refused the invitation code: it is unknown or was used already; ask its operator for a new one")]
    InviteInvalid { url: String },
    #[error("the matcher at {url} refused the admin token ({message})")]
    AdminUnauthorized { url: String, message: String },
    #[error("refusing plain HTTP to {url}: the bearer token and every ciphertext would cross the network unprotected, and anyone on the path could answer in the matcher's place and force any verdict")]
    InsecureHttp { url: String },
    #[error("the matcher at {url} presented a different TLS certificate (SHA-256 {presented}) than the one pinned for it ({pinned}): someone may be intercepting the connection, or the server's certificate was replaced. Nothing was sent")]
    CertificateChanged {
        url: String,
        pinned: String,
        presented: String,
    },
    #[error("the matcher at {url} answered {status}: {message}")]
    Remote {
        url: String,
        status: u16,
        message: String,
    },
    #[error("token file {path}: {detail}")]
    TokenFile { path: String, detail: String },
    #[error("the result was not read to the end: its reader stopped")]
    Cancelled,
}
