//! Connecting to NATS with the authentication and TLS options of [`NatsArgs`].

use crate::settings::{NatsArgs, DEFAULT_NATS_URL};
use anyhow::Context;

impl NatsArgs {
    /// The URL to use: the given one, else the default.
    pub fn url_or_default(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
    }

    /// A plain connection's endpoint for reading history over a connection of the reader's own
    /// (`projector::feed::wire`); `None` when TLS or a credentials file is configured, which only
    /// async-nats' connection does.
    pub fn wire_endpoint(&self) -> Option<projector::feed::wire::Endpoint> {
        if self.creds.is_some()
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_required
        {
            return None;
        }
        use projector::feed::wire::Auth;
        let auth = match (&self.user, &self.password, &self.token) {
            (Some(user), Some(password), _) => Auth::UserPassword {
                user: user.clone(),
                password: password.clone(),
            },
            (_, _, Some(token)) => Auth::Token(token.clone()),
            _ => Auth::None,
        };
        projector::feed::wire::Endpoint::from_urls(&self.url_or_default(), auth)
    }

    /// Connects with every option given.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let url = self.url_or_default();
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None);
        // retry_on_initial_connect would wait forever on a wrong URL; bound the first attempt.
        options = options.connection_timeout(std::time::Duration::from_secs(5));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(creds) = &self.creds {
            options = options
                .credentials_file(creds)
                .await
                .with_context(|| format!("reading NATS credentials file {}", creds.display()))?;
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        let client =
            tokio::time::timeout(std::time::Duration::from_secs(10), options.connect(&url))
                .await
                .map_err(|_| anyhow::anyhow!("no NATS server answered at {url} within 10 s"))?
                .with_context(|| format!("connecting to NATS at {url}"))?;
        Ok(client)
    }
}
