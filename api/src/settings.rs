//! What the read API needs to know besides its connections: the bearer tokens that scope access
//! per company, which projector position to report, and how long to wait for `?min_seq=`.

use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

/// Where `runledger up` / `runledger serve` listen unless `RUNLEDGER_HTTP_ADDR` says otherwise.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// Default of [`ApiSettings::stall_after`].
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);

/// Shortest accepted token: a guessable token is no access control.
const MIN_TOKEN_LEN: usize = 16;

/// Settings of the read API.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub tokens: Tokens,
    /// The projector's position row (`projector_positions.consumer`) responses report.
    pub consumer: String,
    /// The JetStream stream the projector reads (for lag).
    pub stream: String,
    /// How often the shared poller reads the projector position (SSE pushes follow it) when it
    /// is not woken by the projector's notifications.
    pub poll_interval: Duration,
    /// How often it polls while it listens for those notifications: a fallback only.
    pub fallback_poll: Duration,
    /// Longest a `?min_seq=` request waits for the projector before answering 503.
    pub min_seq_wait: Duration,
    /// Past this wait, an event not yet read or a follow-up not yet published is a stall
    /// (`/healthz` answers 503 `stalled`).
    pub stall_after: Duration,
    /// The stream's subjects (their partition count decides which position rows are read).
    pub subjects: events::Subjects,
    /// The reconciler's schemas (one, or one per partition, in partition order), whose
    /// positions and outboxes `/healthz` reports when they exist.
    pub reconciler_schemas: Vec<String>,
    /// Timeouts and limits per client and connection.
    pub limits: crate::limits::Limits,
}

impl ApiSettings {
    /// Defaults: the default projector consumer, 250 ms polling (5 s while notified), 2 s
    /// `min_seq` wait, a stall after 60 s, no reconciler.
    pub fn new(tokens: Tokens, stream: &str) -> Self {
        Self {
            tokens,
            consumer: "runledger-projector".into(),
            stream: stream.to_owned(),
            poll_interval: Duration::from_millis(250),
            fallback_poll: Duration::from_secs(5),
            min_seq_wait: Duration::from_secs(2),
            stall_after: DEFAULT_STALL_AFTER,
            subjects: events::Subjects::default(),
            reconciler_schemas: Vec::new(),
            limits: crate::limits::Limits::default(),
        }
    }
}

/// Who may read what: tokens per company and admin tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    admin: Vec<String>,
    companies: Vec<(Uuid, String)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("Tokens")
            .field("admin_tokens", &self.admin.len())
            .field(
                "companies",
                &self.companies.iter().map(|(c, _)| c).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A token configuration that cannot be used. Messages name the entry, never the token.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("RUNLEDGER_API_TOKENS entry {0}: expected `<company-uuid>=<token>`")]
    Shape(usize),
    #[error("RUNLEDGER_API_TOKENS entry {0}: `{1}` is not a company UUID")]
    Company(usize, String),
    #[error("{0}: tokens must be at least {MIN_TOKEN_LEN} characters")]
    TooShort(String),
    #[error("{0}: tokens may only contain letters, digits and `-._~+/=`")]
    Charset(String),
    #[error("{0}: the same token is configured twice")]
    Duplicate(String),
}

/// What a presented token grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Admin,
    Company(Uuid),
}

fn check_token(token: &str, what: &str) -> Result<(), TokenError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort(what.to_owned()));
    }
    // Tokens travel in a header and a cookie; keep them to characters both carry verbatim.
    let ok = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    if !ok {
        return Err(TokenError::Charset(what.to_owned()));
    }
    Ok(())
}

/// Compares without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Tokens {
    /// Parses `RUNLEDGER_API_TOKENS` (`<company-uuid>=<token>,...`; several tokens per company
    /// allowed, for rotation) and `RUNLEDGER_ADMIN_TOKEN`.
    pub fn parse(companies: Option<&str>, admin: Option<&str>) -> Result<Self, TokenError> {
        let mut tokens = Tokens::default();
        if let Some(admin) = admin.map(str::trim).filter(|a| !a.is_empty()) {
            check_token(admin, "RUNLEDGER_ADMIN_TOKEN")?;
            tokens.admin.push(admin.to_owned());
        }
        let entries = companies.unwrap_or("").split(',').map(str::trim);
        for (i, entry) in entries.enumerate().filter(|(_, e)| !e.is_empty()) {
            let n = i + 1;
            let (company, token) = entry.split_once('=').ok_or(TokenError::Shape(n))?;
            let company = company.trim();
            let company =
                Uuid::parse_str(company).map_err(|_| TokenError::Company(n, company.into()))?;
            let token = token.trim();
            let what = format!("RUNLEDGER_API_TOKENS entry {n}");
            check_token(token, &what)?;
            if tokens.grant(token).is_some() {
                return Err(TokenError::Duplicate(what));
            }
            tokens.companies.push((company, token.to_owned()));
        }
        Ok(tokens)
    }

    /// A single admin token (tests, embedding).
    pub fn admin(token: &str) -> Result<Self, TokenError> {
        Self::parse(None, Some(token))
    }

    /// Adds a company token.
    pub fn with_company(mut self, company: Uuid, token: &str) -> Result<Self, TokenError> {
        check_token(token, "company token")?;
        if self.grant(token).is_some() {
            return Err(TokenError::Duplicate("company token".into()));
        }
        self.companies.push((company, token.to_owned()));
        Ok(self)
    }

    /// No token at all: the API is open (allowed on loopback addresses only).
    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.companies.is_empty()
    }

    /// Companies with at least one token.
    pub fn companies(&self) -> Vec<Uuid> {
        let mut v: Vec<Uuid> = self.companies.iter().map(|(c, _)| *c).collect();
        v.sort();
        v.dedup();
        v
    }

    /// What `presented` grants, if anything. Every configured token is compared.
    pub fn grant(&self, presented: &str) -> Option<Grant> {
        let mut found = None;
        for admin in &self.admin {
            if same(admin, presented) {
                found = Some(Grant::Admin);
            }
        }
        for (company, token) in &self.companies {
            if same(token, presented) && found.is_none() {
                found = Some(Grant::Company(*company));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00000000-0000-0000-0000-00000000000a";

    #[test]
    fn parses_company_and_admin_tokens() {
        let t = Tokens::parse(
            Some(&format!(" {A}=aaaaaaaaaaaaaaaa1 , {A}=aaaaaaaaaaaaaaaa2,")),
            Some("root-root-root-root"),
        )
        .unwrap();
        let a = Uuid::parse_str(A).unwrap();
        assert_eq!(t.grant("aaaaaaaaaaaaaaaa1"), Some(Grant::Company(a)));
        assert_eq!(t.grant("aaaaaaaaaaaaaaaa2"), Some(Grant::Company(a)));
        assert_eq!(t.grant("root-root-root-root"), Some(Grant::Admin));
        assert_eq!(t.grant("aaaaaaaaaaaaaaaa"), None);
        assert_eq!(t.grant(""), None);
        assert!(!format!("{t:?}").contains("aaaa"), "Debug hides tokens");
        assert!(Tokens::parse(None, Some("  ")).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_configuration_naming_the_entry() {
        assert_eq!(
            Tokens::parse(Some("nonsense"), None).unwrap_err(),
            TokenError::Shape(1)
        );
        assert_eq!(
            Tokens::parse(
                Some(&format!("{A}=aaaaaaaaaaaaaaaa1,x=bbbbbbbbbbbbbbbbbb")),
                None
            )
            .unwrap_err(),
            TokenError::Company(2, "x".into())
        );
        assert!(matches!(
            Tokens::parse(Some(&format!("{A}=short")), None).unwrap_err(),
            TokenError::TooShort(_)
        ));
        assert!(matches!(
            Tokens::parse(Some(&format!("{A}=has;semicolon;inside")), None).unwrap_err(),
            TokenError::Charset(_)
        ));
        assert!(matches!(
            Tokens::parse(
                Some(&format!("{A}=aaaaaaaaaaaaaaaa1")),
                Some("aaaaaaaaaaaaaaaa1")
            )
            .unwrap_err(),
            TokenError::Duplicate(_)
        ));
        assert!(matches!(
            Tokens::parse(None, Some("short")).unwrap_err(),
            TokenError::TooShort(_)
        ));
    }
}
