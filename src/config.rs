//! Typed configuration, read once at start-up from the environment (after `.env`).

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use actix_web::http::Uri;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::actors::{ReadSettings, WebhookSettings};
use crate::api::{ApiKeys, CorsOrigins};
use crate::db::{ConnectOptions, ConnectOptionsError, PoolSettings};
use crate::domain::{RetrySchedule, WebhookSecret};
use crate::traces::{Sampling, TraceProtocol, TraceSettings};

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// Where PostgreSQL is: hosts, credentials, TLS. Its `Debug` shows no password.
    pub database: ConnectOptions,
    pub pool: PoolSettings,
    /// Replicas to read from; none without `DATABASE_READ_URL`: every read on the primary.
    pub reads: Option<ReadSettings>,
    /// How long `/health` waits for `SELECT 1`.
    pub ping_timeout: Duration,
    /// HTTP workers, each with one `DbExecutor` and its share of the pool.
    pub executors: usize,
    /// Keys accepted as `Authorization: Bearer <key>` on `/api/v1`; none means the API is open.
    pub api_keys: ApiKeys,
    /// Origins whose browser pages may call the API; none by default.
    pub cors_allowed_origins: CorsOrigins,
    /// How long a client may take to send a request's head, and then its body, before the
    /// connection is dropped.
    pub request_timeout: Duration,
    /// After SIGTERM, how long the instance reports not ready while still serving, so that a
    /// load balancer stops sending before the listener closes.
    pub shutdown_grace: Duration,
    /// How long order events are kept before the periodic purge deletes them.
    pub events_retention: Duration,
    /// Webhook deliveries; none without `WEBHOOK_URLS`.
    pub webhooks: Option<WebhookSettings>,
    /// OpenTelemetry traces; none without an OTLP endpoint, or with `OTEL_SDK_DISABLED=true`.
    pub traces: Option<TraceSettings>,
}

/// A variable that is set but unusable; start-up stops and names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    /// The error of a variable whose value may be or hold a secret (a key, a password in a
    /// URL): it names the variable and never repeats the value.
    fn hiding(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            value: "<hidden>".into(),
            reason: reason.into(),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads every setting through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = PoolSettings {
            max_size: env.parse("DB_MAX_OPEN_CONNS", 16, positive)?,
            min_idle: env.parse("DB_MAX_IDLE_CONNS", 4, |_: &u32| Ok(()))?,
            max_lifetime: env.duration("DB_CONN_MAX_LIFETIME", "45m")?,
            idle_timeout: env.duration("DB_CONN_MAX_IDLE_TIME", "20m")?,
            connection_timeout: env.duration("DB_POOL_TIMEOUT", "3s")?,
        };
        if pool.min_idle > pool.max_size {
            return Err(env.invalid(
                "DB_MAX_IDLE_CONNS",
                format!("must not exceed DB_MAX_OPEN_CONNS ({})", pool.max_size),
            ));
        }
        // Each executor has a share of the pool of its own: at least one connection each.
        let executors = env.parse("DB_EXECUTORS", cores.min(pool.max_size as usize), positive)?;
        if executors > pool.max_size as usize {
            return Err(env.invalid(
                "DB_EXECUTORS",
                format!(
                    "must not exceed DB_MAX_OPEN_CONNS ({}): each executor has connections of its own",
                    pool.max_size
                ),
            ));
        }
        Ok(Self {
            host: env.parse("HOST", IpAddr::from([0, 0, 0, 0]), |_| Ok(()))?,
            port: env.parse("PORT", 8080, |_| Ok(()))?,
            database: database(&env)?,
            reads: reads(&env, &pool, executors)?,
            pool,
            ping_timeout: env.duration("DB_PING_TIMEOUT", "2s")?,
            executors,
            api_keys: ApiKeys::parse(&env.get("API_KEYS").unwrap_or_default())
                .map_err(|reason| ConfigError::hiding("API_KEYS", reason))?,
            cors_allowed_origins: CorsOrigins::parse(
                &env.get("CORS_ALLOWED_ORIGINS").unwrap_or_default(),
            )
            .map_err(|reason| env.invalid("CORS_ALLOWED_ORIGINS", reason))?,
            request_timeout: env.duration("HTTP_REQUEST_TIMEOUT", "10s")?,
            shutdown_grace: env.duration("SHUTDOWN_GRACE", "5s")?,
            events_retention: env.duration("EVENTS_RETENTION", "7days")?,
            webhooks: webhooks(&env)?,
            traces: traces(&env)?,
        })
    }
}

/// The read pool of `DATABASE_READ_URL`, sized like the primary's unless told otherwise. Every
/// `DB_READ_*` variable is checked either way, so that a mistake shows before reads move.
fn reads(
    env: &Env<'_>,
    pool: &PoolSettings,
    executors: usize,
) -> Result<Option<ReadSettings>, ConfigError> {
    let max_size = env.parse("DB_READ_MAX_OPEN_CONNS", pool.max_size, positive)?;
    let max_lag = env.duration("DB_READ_MAX_LAG", "1s")?;
    let wait = env.duration("DB_READ_WAIT", "50ms")?;
    let Some(url) = env.get("DATABASE_READ_URL") else {
        return Ok(None);
    };
    let database = ConnectOptions::parse_for_reads(&url)
        .map_err(|e| ConfigError::hiding("DATABASE_READ_URL", e.to_string()))?;
    // Each executor reads on connections of its own, as it writes.
    if (max_size as usize) < executors {
        return Err(env.invalid(
            "DB_READ_MAX_OPEN_CONNS",
            format!("must be at least DB_EXECUTORS ({executors}): each executor has read connections of its own"),
        ));
    }
    Ok(Some(ReadSettings {
        database,
        pool: PoolSettings {
            max_size,
            min_idle: pool.min_idle.min(max_size),
            ..pool.clone()
        },
        max_lag,
        wait,
    }))
}

/// The `WEBHOOK_*` variables: deliveries when `WEBHOOK_URLS` lists any, which must then be
/// signed. Every variable is checked either way, so that a mistake shows before webhooks are
/// turned on.
fn webhooks(env: &Env<'_>) -> Result<Option<WebhookSettings>, ConfigError> {
    let urls = webhook_urls(env)?;
    let secret = webhook_secret(env)?;
    let timeout = env.duration("WEBHOOK_TIMEOUT", "10s")?;
    let retries = RetrySchedule::parse(
        &env.get("WEBHOOK_RETRY_SCHEDULE")
            .unwrap_or_else(|| RetrySchedule::DEFAULT.to_owned()),
    )
    .map_err(|reason| env.invalid("WEBHOOK_RETRY_SCHEDULE", reason))?;
    if urls.is_empty() {
        return Ok(None);
    }
    let secret = secret.ok_or_else(|| {
        env.invalid(
            "WEBHOOK_URLS",
            "webhooks are signed: set WEBHOOK_SECRET (whsec_ and the base64 of 24+ random bytes)",
        )
    })?;
    Ok(Some(WebhookSettings {
        urls,
        secret,
        timeout,
        retries,
    }))
}

/// `WEBHOOK_URLS`: comma-separated `http://` or `https://` URLs.
fn webhook_urls(env: &Env<'_>) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "WEBHOOK_URLS";
    let raw = env.get(VAR).unwrap_or_default();
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    for url in &urls {
        let usable = url.parse::<Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        });
        if !usable {
            return Err(env.invalid(
                VAR,
                format!("{url:?} is not an http:// or https:// URL with a host"),
            ));
        }
    }
    Ok(urls)
}

/// `WEBHOOK_SECRET`: `whsec_<base64>`, as Standard Webhooks writes keys.
fn webhook_secret(env: &Env<'_>) -> Result<Option<WebhookSecret>, ConfigError> {
    env.get("WEBHOOK_SECRET")
        .map(|secret| {
            WebhookSecret::parse(secret.trim())
                .map_err(|reason| ConfigError::hiding("WEBHOOK_SECRET", reason))
        })
        .transpose()
}

/// The OpenTelemetry SDK's own variables, as its specification defines them, for traces over
/// OTLP/HTTP. Every one is checked even when traces are off, as the webhooks' are.
fn traces(env: &Env<'_>) -> Result<Option<TraceSettings>, ConfigError> {
    let disabled = env.parse("OTEL_SDK_DISABLED", false, |_| Ok(()))?;
    // The signal's own URL is used as it is; the general one is a base the signal's path goes
    // after.
    let endpoint = match (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => Some(otlp_url(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?),
        (None, Some(base)) => {
            let base = otlp_url(env, "OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
            Some(format!("{}/v1/traces", base.trim_end_matches('/')))
        }
        (None, None) => None,
    };
    let protocol = match env
        .get("OTEL_EXPORTER_OTLP_PROTOCOL")
        .as_deref()
        .map(str::trim)
    {
        None | Some("http/protobuf") => TraceProtocol::Protobuf,
        Some("http/json") => TraceProtocol::Json,
        Some(_) => {
            return Err(env.invalid(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/protobuf or http/json (gRPC is not built in)",
            ))
        }
    };
    let sampling = sampling(env)?;
    let service_name = env
        .get("OTEL_SERVICE_NAME")
        .map_or_else(|| "order-service".to_owned(), |name| name.trim().to_owned());
    let resource_attributes = resource_attributes(env)?;
    // In milliseconds, as the specification has it.
    let export_delay =
        Duration::from_millis(env.parse("OTEL_BSP_SCHEDULE_DELAY", 5000, positive)?);
    Ok(endpoint
        .filter(|_| !disabled)
        .map(|endpoint| TraceSettings {
            endpoint,
            protocol,
            sampling,
            service_name,
            resource_attributes,
            export_delay,
        }))
}

/// An OTLP endpoint: an `http://` or `https://` URL with a host.
fn otlp_url(env: &Env<'_>, var: &'static str, url: String) -> Result<String, ConfigError> {
    let url = url.trim().to_owned();
    let usable = url.parse::<Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    });
    if usable {
        Ok(url)
    } else {
        Err(env.invalid(var, "not an http:// or https:// URL with a host"))
    }
}

/// `OTEL_TRACES_SAMPLER` and its `OTEL_TRACES_SAMPLER_ARG`, the specification's names.
fn sampling(env: &Env<'_>) -> Result<Sampling, ConfigError> {
    let ratio = env.parse("OTEL_TRACES_SAMPLER_ARG", 1.0, |ratio: &f64| {
        if (0.0..=1.0).contains(ratio) {
            Ok(())
        } else {
            Err("a ratio from 0 to 1".into())
        }
    })?;
    let sampler = env.get("OTEL_TRACES_SAMPLER");
    Ok(
        match sampler
            .as_deref()
            .map(str::trim)
            .unwrap_or("parentbased_always_on")
        {
            "always_on" => Sampling::Always,
            "always_off" => Sampling::Never,
            "traceidratio" => Sampling::Ratio(ratio),
            "parentbased_always_on" => Sampling::ParentOr(Box::new(Sampling::Always)),
            "parentbased_always_off" => Sampling::ParentOr(Box::new(Sampling::Never)),
            "parentbased_traceidratio" => Sampling::ParentOr(Box::new(Sampling::Ratio(ratio))),
            _ => {
                return Err(env.invalid(
                    "OTEL_TRACES_SAMPLER",
                    "always_on, always_off, traceidratio, or parentbased_ and one of those",
                ))
            }
        },
    )
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs, comma-separated, values percent-encoded.
fn resource_attributes(env: &Env<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let raw = env.get(VAR).unwrap_or_default();
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .filter(|(key, _)| !key.trim().is_empty())
                .ok_or_else(|| env.invalid(VAR, format!("{pair:?} is not key=value")))?;
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|e| env.invalid(VAR, format!("{pair:?}: {e}")))?;
            Ok((key.trim().to_owned(), value.into_owned()))
        })
        .collect()
}

fn positive<T: PartialOrd + Default>(n: &T) -> Result<(), String> {
    if *n > T::default() {
        Ok(())
    } else {
        Err("must be at least 1".into())
    }
}

/// `DATABASE_URL` when set, else a URL built from the `POSTGRES_*` variables; parsed
/// here so that a bad URL, TLS mode or CA file stops start-up and names its variable.
fn database(env: &Env<'_>) -> Result<ConnectOptions, ConfigError> {
    if let Some(url) = env.get("DATABASE_URL") {
        return ConnectOptions::parse(&url)
            .map_err(|e| ConfigError::hiding("DATABASE_URL", e.to_string()));
    }
    let url = database_url(env)?;
    ConnectOptions::parse(&url).map_err(|e| {
        let var = match e {
            ConnectOptionsError::SslMode(_) => "POSTGRES_SSLMODE",
            ConnectOptionsError::RootCert { .. } | ConnectOptionsError::Tls(_) => {
                "POSTGRES_SSLROOTCERT"
            }
            ConnectOptionsError::Url(_) => "POSTGRES_HOST",
        };
        env.invalid(var, e.to_string())
    })
}

/// The URL the `POSTGRES_*` variables describe. `POSTGRES_HOST` may list several hosts,
/// comma-separated, each with an optional `:port` (else `POSTGRES_PORT`).
fn database_url(env: &Env<'_>) -> Result<String, ConfigError> {
    let encode = |var: &str, default: &str| {
        let value = env.get(var).unwrap_or_else(|| default.to_owned());
        utf8_percent_encode(&value, NON_ALPHANUMERIC).to_string()
    };
    let port: u16 = env.parse("POSTGRES_PORT", 5432, |_| Ok(()))?;
    let hosts = env
        .get("POSTGRES_HOST")
        .unwrap_or_else(|| "localhost".into())
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| {
            if host.contains(':') {
                host.to_owned()
            } else {
                format!("{host}:{port}")
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut url = format!(
        "postgres://{}:{}@{hosts}/{}?sslmode={}",
        encode("POSTGRES_USER", "user"),
        encode("POSTGRES_PASSWORD", "password"),
        encode("POSTGRES_DBNAME", "orderdb"),
        encode("POSTGRES_SSLMODE", "disable"),
    );
    if env.get("POSTGRES_SSLROOTCERT").is_some() {
        url.push_str("&sslrootcert=");
        url.push_str(&encode("POSTGRES_SSLROOTCERT", ""));
    }
    Ok(url)
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The variable's value; set but blank counts as unset.
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn invalid(&self, var: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            var,
            value: self.get(var).unwrap_or_default(),
            reason: reason.into(),
        }
    }

    fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: T,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let value = raw
            .trim()
            .parse::<T>()
            .map_err(|e| self.invalid(var, e.to_string()))?;
        check(&value).map_err(|reason| self.invalid(var, reason))?;
        Ok(value)
    }

    /// Durations like `45m`, `15s`, `500ms`.
    fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let raw = self.get(var).unwrap_or_else(|| default.to_owned());
        match humantime::parse_duration(raw.trim()) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(self.invalid(var, "must be longer than zero")),
            Err(e) => Err(self.invalid(var, format!("{e} (expected e.g. 15s, 45m)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::db::SslMode;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|var| vars.get(var).cloned())
    }

    #[test]
    fn every_variable_has_its_default_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(
            url(&[]),
            "postgres://user:password@localhost:5432/orderdb?sslmode=disable"
        );
        assert_eq!(c.database.ssl_mode(), SslMode::Disable);
        assert_eq!(c.pool.max_size, 16);
        assert_eq!(c.pool.connection_timeout, Duration::from_secs(3));
        assert_eq!(c.pool.max_lifetime, Duration::from_secs(45 * 60));
        assert!(c.executors >= 1);
        assert!(
            !c.api_keys.required(),
            "the API is open unless keys are set"
        );
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.events_retention, Duration::from_secs(7 * 24 * 60 * 60));
        assert!(c.webhooks.is_none(), "no deliveries unless asked");
        assert!(c.reads.is_none(), "every read on the primary unless asked");
        assert_eq!(
            c.cors_allowed_origins,
            CorsOrigins::None,
            "no cross-origin calls unless allowed"
        );
    }

    #[test]
    fn cors_origins_are_star_or_a_list_of_origins() {
        let origins =
            |value| config(&[("CORS_ALLOWED_ORIGINS", value)]).map(|c| c.cors_allowed_origins);
        assert_eq!(origins(" * ").unwrap(), CorsOrigins::Any);
        assert_eq!(origins(" , ").unwrap(), CorsOrigins::None);
        assert_eq!(
            origins("https://shop.example.com, http://localhost:3000,").unwrap(),
            CorsOrigins::Listed(vec![
                "https://shop.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "*,https://shop.example.com",
            "shop.example.com",
            "https://shop.example.com/",
            "https://shop.example.com/app",
            "ftp://shop.example.com",
            "https://",
            "https://*.example.com",
        ] {
            let err = origins(bad).expect_err(bad);
            assert_eq!(err.var, "CORS_ALLOWED_ORIGINS", "{bad}");
        }
    }

    #[test]
    fn api_keys_are_a_comma_separated_list() {
        let c = config(&[("API_KEYS", " first , second,,")]).unwrap();
        assert_eq!(c.api_keys, ApiKeys::new(["first", "second"]));
        assert!(!config(&[("API_KEYS", " , ")]).unwrap().api_keys.required());
        let err = config(&[("API_KEYS", "good,s3cret key")]).unwrap_err();
        assert_eq!(err.var, "API_KEYS");
        assert!(
            !err.to_string().contains("s3cret"),
            "a key never appears in an error: {err}"
        );
    }

    /// The URL the `POSTGRES_*` variables make.
    fn url(vars: &[(&str, &str)]) -> String {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        let lookup = |var: &str| vars.get(var).map(|v| v.to_string());
        database_url(&Env(&lookup)).unwrap()
    }

    #[test]
    fn database_url_wins_and_credentials_are_escaped() {
        let c = config(&[
            ("DATABASE_URL", "postgres://a@b/c?sslmode=require"),
            ("POSTGRES_SSLMODE", "disable"),
        ])
        .unwrap();
        assert_eq!(c.database.ssl_mode(), SslMode::Require);
        assert_eq!(
            url(&[
                ("POSTGRES_PASSWORD", "p@ss/word"),
                ("POSTGRES_PORT", "6543"),
            ]),
            "postgres://user:p%40ss%2Fword@localhost:6543/orderdb?sslmode=disable"
        );
    }

    #[test]
    fn postgres_host_may_list_several_hosts_and_tls_has_its_variables() {
        assert_eq!(
            url(&[
                ("POSTGRES_HOST", "db1, db2:6000"),
                ("POSTGRES_PORT", "5433"),
                ("POSTGRES_SSLMODE", "verify-full"),
                ("POSTGRES_SSLROOTCERT", "/etc/ssl/ca.pem"),
            ]),
            "postgres://user:password@db1:5433,db2:6000/orderdb\
             ?sslmode=verify%2Dfull&sslrootcert=%2Fetc%2Fssl%2Fca%2Epem"
        );
    }

    #[test]
    fn webhooks_need_http_urls_and_a_secret() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let c = config(&[
            (
                "WEBHOOK_URLS",
                "https://hooks.example.com/orders, http://127.0.0.1:9000/",
            ),
            ("WEBHOOK_SECRET", secret),
        ])
        .unwrap();
        let webhooks = c.webhooks.as_ref().expect("webhooks with URLs");
        assert_eq!(
            webhooks.urls,
            ["https://hooks.example.com/orders", "http://127.0.0.1:9000/"]
        );
        assert_eq!(webhooks.timeout, Duration::from_secs(10), "the default");
        assert_eq!(
            webhooks.retries.delays()[0],
            Duration::from_secs(5),
            "the default"
        );
        assert!(
            !format!("{c:?}").contains("MfKQ9r8"),
            "the secret is never shown"
        );
        for (urls, secret) in [
            ("https://hooks.example.com", None),
            ("ftp://hooks.example.com", Some(secret)),
            ("hooks.example.com/orders", Some(secret)),
        ] {
            let mut vars = vec![("WEBHOOK_URLS", urls)];
            vars.extend(secret.map(|s| ("WEBHOOK_SECRET", s)));
            assert_eq!(config(&vars).unwrap_err().var, "WEBHOOK_URLS", "{urls}");
        }
        let err = config(&[("WEBHOOK_SECRET", "whsec_c2hvcnQ=")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_SECRET");
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_follow_the_otel_variables() {
        assert_eq!(config(&[]).unwrap().traces, None, "off by default");
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/");
        let on = config(&[base])
            .unwrap()
            .traces
            .expect("on with an endpoint");
        assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(on.protocol, TraceProtocol::Protobuf);
        assert_eq!(on.sampling, Sampling::ParentOr(Box::new(Sampling::Always)));
        assert_eq!(on.service_name, "order-service");
        assert_eq!(on.export_delay, Duration::from_secs(5));
        assert_eq!(
            config(&[base, ("OTEL_SDK_DISABLED", "true")])
                .unwrap()
                .traces,
            None,
            "the SDK's switch wins"
        );

        let full = config(&[
            base,
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://otel.example.com/in",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "orders-eu"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, team=a%2Cb",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ])
        .unwrap()
        .traces
        .unwrap();
        assert_eq!(
            full,
            TraceSettings {
                endpoint: "https://otel.example.com/in".into(),
                protocol: TraceProtocol::Json,
                sampling: Sampling::ParentOr(Box::new(Sampling::Ratio(0.01))),
                service_name: "orders-eu".into(),
                resource_attributes: vec![
                    ("deployment.environment".into(), "prod".into()),
                    ("team".into(), "a,b".into()),
                ],
                export_delay: Duration::from_millis(200),
            },
            "the signal's own URL is used as it is"
        );
    }

    #[test]
    fn reads_move_to_replicas_only_with_a_read_url() {
        let url = (
            "DATABASE_READ_URL",
            "postgres://u:p@10.0.0.2:5432,10.0.0.3:5432/orderdb",
        );
        let reads = config(&[url, ("DB_MAX_OPEN_CONNS", "6")])
            .unwrap()
            .reads
            .expect("a read URL turns reads on");
        assert_eq!(reads.pool.max_size, 6, "sized as the primary's pool");
        assert_eq!(reads.max_lag, Duration::from_secs(1));
        assert_eq!(reads.wait, Duration::from_millis(50));
        let tuned = config(&[
            url,
            ("DB_READ_MAX_OPEN_CONNS", "32"),
            ("DB_READ_MAX_LAG", "250ms"),
            ("DB_READ_WAIT", "20ms"),
        ])
        .unwrap()
        .reads
        .unwrap();
        assert_eq!(
            (tuned.pool.max_size, tuned.max_lag, tuned.wait),
            (32, Duration::from_millis(250), Duration::from_millis(20))
        );
        let err =
            config(&[url, ("DB_EXECUTORS", "4"), ("DB_READ_MAX_OPEN_CONNS", "2")]).unwrap_err();
        assert_eq!(err.var, "DB_READ_MAX_OPEN_CONNS");
        let err =
            config(&[("DATABASE_READ_URL", "postgres://u:s3cret@h/db?sslmode=on")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_READ_URL");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let cases = [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("DB_MAX_OPEN_CONNS", "0"),
            ("DB_EXECUTORS", "-1"),
            ("DB_POOL_TIMEOUT", "soon"),
            ("DB_CONN_MAX_LIFETIME", "0s"),
            ("POSTGRES_PORT", "x"),
            ("POSTGRES_SSLMODE", "verify"),
            ("HOST", "localhost:80"),
            ("HTTP_REQUEST_TIMEOUT", "0s"),
            ("WEBHOOK_TIMEOUT", "never"),
            ("WEBHOOK_RETRY_SCHEDULE", "5s,,1m"),
            ("OTEL_SDK_DISABLED", "yes"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://collector"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team"),
            ("OTEL_BSP_SCHEDULE_DELAY", "0"),
            ("DB_READ_MAX_LAG", "0s"),
            ("DB_READ_WAIT", "a while"),
            ("DB_READ_MAX_OPEN_CONNS", "0"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = config(&[("DB_MAX_OPEN_CONNS", "2"), ("DB_MAX_IDLE_CONNS", "3")]).unwrap_err();
        assert_eq!(err.var, "DB_MAX_IDLE_CONNS");
        let few = [("DB_MAX_OPEN_CONNS", "2"), ("DB_MAX_IDLE_CONNS", "0")];
        let err = config(&[few[0], few[1], ("DB_EXECUTORS", "3")]).unwrap_err();
        assert_eq!(err.var, "DB_EXECUTORS");
        let fewer = config(&[("DB_MAX_OPEN_CONNS", "1"), few[1]]).unwrap();
        assert_eq!(
            fewer.executors, 1,
            "by default no more executors than connections"
        );
        let err = config(&[
            ("POSTGRES_SSLMODE", "verify-full"),
            ("POSTGRES_SSLROOTCERT", "/no/such/ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "POSTGRES_SSLROOTCERT");
        let err = config(&[("DATABASE_URL", "postgres://u:s3cret@h/db?sslmode=on")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(
            !err.to_string().contains("s3cret"),
            "a password never appears in an error: {err}"
        );
    }
}
