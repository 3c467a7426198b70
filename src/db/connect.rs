//! How the service reaches PostgreSQL: a libpq-style URL naming one or several hosts, and TLS
//! in each of libpq's `sslmode`s.
//!
//! tokio-postgres (the client under diesel-async) understands several hosts and
//! `target_session_attrs` itself, but `sslmode` only up to `require` and no `sslrootcert`. Those
//! two are taken out of the URL here and become the settings of an OpenSSL connector (through
//! native-tls), so every mode means what it means to libpq.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use native_tls::{Certificate, TlsConnector};
use percent_encoding::percent_decode_str;
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::{LoadBalanceHosts, SslMode as WireSslMode, TargetSessionAttrs};
use tokio_postgres::NoTls;

use crate::error_chain::error_chain;

/// Without a `connect_timeout` in the URL, a host that drops packets would hold each attempt
/// for the operating system's TCP timeout (minutes), and with several hosts the next host would
/// never be tried in useful time.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// libpq's `sslmode`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, unauthenticated; libpq's default.
    Prefer,
    /// TLS or nothing, unauthenticated.
    Require,
    /// TLS with a certificate signed by a trusted CA, for any host name.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = ConnectOptionsError;

    fn from_str(mode: &str) -> Result<Self, Self::Err> {
        Ok(match mode {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => return Err(ConnectOptionsError::SslMode(other.to_owned())),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectOptionsError {
    #[error("sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("cannot read the CA certificates in sslrootcert {path:?}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("not a usable PostgreSQL URL: {0}")]
    Url(String),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] native_tls::Error),
}

/// Where and how to connect, parsed once at start-up; cloned into every connection attempt.
#[derive(Clone)]
pub struct ConnectOptions {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    /// `None` with `sslmode=disable`.
    tls: Option<MakeTlsConnector>,
}

impl ConnectOptions {
    /// Parses a URL such as
    /// `postgres://u:p@10.0.0.1:5432,10.0.0.2:5432/orderdb?sslmode=verify-full&sslrootcert=/ca.pem`.
    ///
    /// As in libpq: without `sslmode` it is `prefer`, and `require` with an `sslrootcert` checks
    /// the chain as `verify-ca` does. Differences: `verify-ca`/`verify-full` without an
    /// `sslrootcert` trust the system's CA store (libpq's `sslrootcert=system`), and a URL with
    /// several hosts and no `target_session_attrs` gets `read-write`, since this service writes.
    pub fn parse(url: &str) -> Result<Self, ConnectOptionsError> {
        Self::parse_with(url, |config| {
            config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        })
    }

    /// Parses a URL of replicas to read from, as `parse` does, but a URL with several hosts
    /// and no `target_session_attrs` gets `read-only` (standbys: the primary's reads have a
    /// pool of their own), and without `load_balance_hosts` it gets `random`, so that the
    /// connections spread over the standbys instead of all going to the first.
    pub fn parse_for_reads(url: &str) -> Result<Self, ConnectOptionsError> {
        let mut options = Self::parse_with(url, |config| {
            config.target_session_attrs(TargetSessionAttrs::ReadOnly);
        })?;
        if !url.contains("load_balance_hosts=") {
            options.config.load_balance_hosts(LoadBalanceHosts::Random);
        }
        Ok(options)
    }

    /// `parse`, with `several_hosts` setting what a URL naming several hosts and no
    /// `target_session_attrs` wants of the one it connects to.
    fn parse_with(
        url: &str,
        several_hosts: impl FnOnce(&mut tokio_postgres::Config),
    ) -> Result<Self, ConnectOptionsError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut passed_on = Vec::new();
        let mut session_attrs_given = false;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(value).decode_utf8_lossy();
            match key {
                "sslmode" => ssl_mode = value.parse()?,
                "sslrootcert" => root_cert = Some(value.into_owned()),
                _ => {
                    session_attrs_given |= key == "target_session_attrs";
                    passed_on.push(pair);
                }
            }
        }
        if ssl_mode == SslMode::Require && root_cert.is_some() {
            ssl_mode = SslMode::VerifyCa;
        }
        let url = if passed_on.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed_on.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| ConnectOptionsError::Url(error_chain(&e)))?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_hosts().len() > 1 && !session_attrs_given {
            several_hosts(&mut config);
        }
        let tls = match ssl_mode {
            SslMode::Disable => None,
            mode => Some(MakeTlsConnector::new(tls_connector(
                mode,
                root_cert.as_deref(),
            )?)),
        };
        Ok(Self {
            config,
            ssl_mode,
            tls,
        })
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Opens one connection: the hosts in order, the first that accepts (and, with
    /// `target_session_attrs=read-write`, takes writes) wins.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let refused = |e: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&e));
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(refused)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(refused)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

/// The hosts, database, user and TLS mode; never the password.
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("ssl_mode", &self.ssl_mode)
            .field(
                "target_session_attrs",
                &self.config.get_target_session_attrs(),
            )
            .finish_non_exhaustive()
    }
}

fn tls_connector(
    mode: SslMode,
    root_cert: Option<&str>,
) -> Result<TlsConnector, ConnectOptionsError> {
    let mut builder = TlsConnector::builder();
    match mode {
        // Encryption without authentication, as libpq does in these modes.
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            builder.danger_accept_invalid_certs(true);
        }
        SslMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyFull => {}
    }
    if let Some(path) = root_cert {
        let unreadable = |reason: String| ConnectOptionsError::RootCert {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let certificates =
            Certificate::stack_from_pem(&pem).map_err(|e| unreadable(e.to_string()))?;
        if certificates.is_empty() {
            return Err(unreadable("no PEM certificate in the file".into()));
        }
        // Only the CAs the operator named, as libpq trusts only the sslrootcert file.
        builder.disable_built_in_roots(true);
        for certificate in certificates {
            builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> ConnectOptions {
        ConnectOptions::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn every_libpq_sslmode_is_understood_and_prefer_is_the_default() {
        let base = "postgres://u:p@localhost:5432/db";
        assert_eq!(parse(base).ssl_mode(), SslMode::Prefer);
        for (name, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let options = parse(&format!("{base}?sslmode={name}"));
            assert_eq!(options.ssl_mode(), mode, "{name}");
            assert_eq!(options.tls.is_some(), mode != SslMode::Disable, "{name}");
        }
        let err = ConnectOptions::parse(&format!("{base}?sslmode=allowed")).unwrap_err();
        assert!(err.to_string().contains("\"allowed\""), "{err}");
    }

    #[test]
    fn several_hosts_want_a_writable_server_unless_told_otherwise() {
        let options = parse("postgres://u@10.0.0.1:5432,10.0.0.2:5433/db?sslmode=disable");
        assert_eq!(options.config.get_hosts().len(), 2);
        assert_eq!(options.config.get_ports(), [5432, 5433]);
        assert_eq!(
            options.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let any = parse("postgres://u@a,b/db?target_session_attrs=any");
        assert_eq!(
            any.config.get_target_session_attrs(),
            TargetSessionAttrs::Any
        );
        let single = parse("postgres://u@a/db");
        assert_eq!(
            single.config.get_target_session_attrs(),
            TargetSessionAttrs::Any
        );
    }

    #[test]
    fn several_read_hosts_want_a_standby_picked_at_random_unless_told_otherwise() {
        let reads = |url: &str| {
            let config = ConnectOptions::parse_for_reads(url)
                .unwrap_or_else(|e| panic!("{url}: {e}"))
                .config;
            (
                config.get_target_session_attrs(),
                config.get_load_balance_hosts(),
            )
        };
        assert_eq!(
            reads("postgres://u@a,b/db"),
            (TargetSessionAttrs::ReadOnly, LoadBalanceHosts::Random)
        );
        assert_eq!(
            reads("postgres://u@a,b/db?target_session_attrs=any&load_balance_hosts=disable"),
            (TargetSessionAttrs::Any, LoadBalanceHosts::Disable)
        );
        // One host, such as a load balancer's read port: whatever answers there.
        assert_eq!(reads("postgres://u@a/db").0, TargetSessionAttrs::Any);
    }

    #[test]
    fn a_connect_timeout_is_always_set() {
        assert_eq!(
            parse("postgres://u@a/db").config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(
            parse("postgres://u@a/db?connect_timeout=7")
                .config
                .get_connect_timeout(),
            Some(&Duration::from_secs(7))
        );
    }

    #[test]
    fn a_missing_root_certificate_or_unknown_option_is_refused_at_parse_time() {
        let err = ConnectOptions::parse(
            "postgres://u@a/db?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch%2Fca.pem",
        )
        .unwrap_err();
        assert!(err.to_string().contains("/no/such/ca.pem"), "{err}");
        let err = ConnectOptions::parse("postgres://u@a/db?sslcompression=1").unwrap_err();
        assert!(err.to_string().contains("sslcompression"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let options = parse("postgres://user:s3cret@localhost/db?sslmode=require");
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Require"), "{shown}");
    }
}
