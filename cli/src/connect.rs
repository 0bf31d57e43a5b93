//! Connecting to NATS with the authentication and TLS options of [`NatsArgs`].

use crate::settings::{NatsArgs, DEFAULT_NATS_URL};
use anyhow::Context;

impl NatsArgs {
    /// The URL to use: the given one, else the running `runledger up`'s of this directory,
    /// else the default.
    pub fn url_or_default(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| crate::endpoints::nats_url_or(DEFAULT_NATS_URL))
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
        let servers = server_addrs(&url)?;
        let client =
            tokio::time::timeout(std::time::Duration::from_secs(10), options.connect(servers))
                .await
                .map_err(|_| anyhow::anyhow!("no NATS server answered at {url} within 10 s"))?
                .with_context(|| format!("connecting to NATS at {url}"))?;
        Ok(client)
    }
}

/// The servers of a `NATS_URL`: one URL, or several separated by commas (a cluster's seed
/// servers; the client learns the others from them).
fn server_addrs(urls: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    urls.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("NATS server URL `{url}` is invalid"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .and_then(|servers| {
            anyhow::ensure!(!servers.is_empty(), "no NATS server URL given");
            Ok(servers)
        })
}

#[cfg(test)]
mod tests {
    use super::server_addrs;

    #[test]
    fn reads_one_or_several_servers() {
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        let servers = server_addrs("nats://a:4222, nats://b:4223,nats://c:4224").unwrap();
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        let bad = server_addrs("nats://a:4222,nats://b:port").unwrap_err();
        assert!(
            format!("{bad:#}").contains("`nats://b:port` is invalid"),
            "{bad:#}"
        );
        assert!(server_addrs(" , ").is_err());
    }
}
