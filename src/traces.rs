//! OpenTelemetry traces: the tracer the layers start their spans with, exporting over
//! OTLP/HTTP in batches from a thread of its own, and the W3C Trace Context headers.
//!
//! Off unless an OTLP endpoint is configured. Then no `Traces` exists, and each layer's only
//! cost is the test of an `Option` (or a flag) it holds: no span, context or allocation is made,
//! and no connection is instrumented.
//!
//! With traces on, a request's span travels as OpenTelemetry's current context: the HTTP layer
//! makes it current while the request's handler runs, a message carries it to the executor,
//! which makes it current again while the message's queries run (`actors::Executor`), and the
//! statements' spans take it as their parent (`db::statements`). Events keep a sampled request's
//! `traceparent`, and their webhooks continue it.
//!
//! Export never blocks a request: ended spans go to the SDK's bounded queue, and a thread sends
//! them. A span whose export failed, or that found the queue full, is counted in `/metrics` and
//! forgotten.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::metrics;

pub use opentelemetry::Context as TraceContext;
pub use opentelemetry_sdk::trace::Span as SdkSpan;

/// How long one export may take; the spans of one that takes longer are dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Spans ended and not yet through an export, at most; more are dropped, and counted. The
/// SDK's queue has this room too, so it never overflows (it would drop spans without a count).
const MAX_PENDING: usize = 2048;

/// Where and how traces go: the `OTEL_*` variables, read by `config`.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The URL spans are POSTed to (`…/v1/traces`).
    pub endpoint: String,
    pub protocol: TraceProtocol,
    pub sampling: Sampling,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    /// How long ended spans may wait before they are sent (`OTEL_BSP_SCHEDULE_DELAY`).
    pub export_delay: Duration,
}

/// OTLP over HTTP, in one of its two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceProtocol {
    Protobuf,
    Json,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    Always,
    Never,
    /// This share of traces, chosen by trace id.
    Ratio(f64),
    /// As the caller's `traceparent` says when there is one, else as the inner rule says.
    ParentOr(Box<Sampling>),
}

impl Sampling {
    fn sampler(&self) -> Sampler {
        match self {
            Self::Always => Sampler::AlwaysOn,
            Self::Never => Sampler::AlwaysOff,
            Self::Ratio(ratio) => Sampler::TraceIdRatioBased(*ratio),
            Self::ParentOr(root) => Sampler::ParentBased(Box::new(root.sampler())),
        }
    }
}

/// Why traces could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP trace exporter: {0}")]
pub struct TracesError(String);

/// The tracer of the instance. Cheap to clone (one reference count): the layers that trace
/// hold one each, and the HTTP layer one per request.
#[derive(Clone)]
pub struct Traces(Arc<Tracing>);

struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    propagator: TraceContextPropagator,
}

impl fmt::Debug for Traces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Traces")
    }
}

impl Traces {
    /// Starts the exporting thread and the tracer.
    pub fn start(settings: &TraceSettings) -> Result<Self, TracesError> {
        let protocol = match settings.protocol {
            TraceProtocol::Protobuf => Protocol::HttpBinary,
            TraceProtocol::Json => Protocol::HttpJson,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(BlockingClient::new()?)
            .with_endpoint(&settings.endpoint)
            .with_protocol(protocol)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TracesError(e.to_string()))?;
        let resource = Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .with_attributes(
                settings
                    .resource_attributes
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .build();
        let pending = Arc::new(AtomicUsize::new(0));
        let batches = BatchSpanProcessor::builder(Counted {
            exporter,
            pending: Arc::clone(&pending),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(settings.export_delay)
                .with_max_queue_size(MAX_PENDING)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded { batches, pending })
            .with_sampler(settings.sampling.sampler())
            .with_resource(resource)
            .build();
        Ok(Self(Arc::new(Tracing {
            tracer: provider.tracer("order-service"),
            provider,
            propagator: TraceContextPropagator::new(),
        })))
    }

    /// The context a request's `traceparent` and `tracestate` headers describe (empty when it
    /// has none, or a malformed one: the request then starts a trace).
    pub fn extract(&self, headers: &actix_web::http::header::HeaderMap) -> Context {
        self.0.propagator.extract(&Headers(headers))
    }

    /// The context a stored `traceparent` describes, to continue its trace.
    pub fn continued(&self, traceparent: &str) -> Context {
        self.0.propagator.extract(&Stored(traceparent))
    }

    /// Starts a span of `kind` named `name` under `parent`.
    pub fn span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
    ) -> SdkSpan {
        self.0
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.0.tracer, parent)
    }

    /// Starts the span `builder` describes under `parent`.
    pub fn build(&self, builder: SpanBuilder, parent: &Context) -> SdkSpan {
        builder.start_with_context(&self.0.tracer, parent)
    }

    /// A span builder named `name`, for spans with links or a start time of their own.
    pub fn builder(&self, name: &'static str) -> SpanBuilder {
        self.0.tracer.span_builder(name)
    }

    /// Exports what is queued, waiting for it; for shutdown.
    pub fn flush(&self) {
        if let Err(e) = self.0.provider.force_flush() {
            log::warn!("traces: the last spans were not exported: {e}");
        }
    }
}

/// The context of `span` under `parent`, as messages carry it.
pub fn context_of(parent: &Context, span: SdkSpan) -> Context {
    parent.with_span(span)
}

/// The W3C `traceparent` of the span of `context`, as a header would carry it.
pub fn traceparent(context: &Context) -> String {
    let span = context.span();
    let span = span.span_context();
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// Whether `context` belongs to a sampled trace: only those are worth carrying.
pub fn sampled(context: &Context) -> bool {
    context.span().span_context().is_sampled()
}

/// A `traceparent` stored with an event, as the only header of a request.
struct Stored<'a>(&'a str);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The SDK's batching processor behind a bound of our own: a span that finds `MAX_PENDING`
/// spans ahead of it is dropped and counted.
#[derive(Debug)]
struct Bounded {
    batches: BatchSpanProcessor,
    /// Spans handed to `batches` whose export has not ended (`Counted` takes them off).
    pending: Arc<AtomicUsize>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut SdkSpan, context: &Context) {
        self.batches.on_start(span, context);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            metrics::trace_spans_dropped(1);
            return;
        }
        self.batches.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.batches.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.batches.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.batches.set_resource(resource);
    }
}

/// The exporter, taking each batch off the pending spans once its export has ended, and
/// counting the spans of every export that failed.
#[derive(Debug)]
struct Counted<E> {
    exporter: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // Until exported, the batch's spans count as lost: an export abandoned midway (its
        // future dropped) loses them too.
        let mut ended = Ended {
            spans: batch.len(),
            exported: false,
            pending: &self.pending,
        };
        let exported = self.exporter.export(batch).await;
        ended.exported = exported.is_ok();
        exported
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

/// One export's spans, taken off the pending ones when it ends, however it ends.
struct Ended<'a> {
    spans: usize,
    exported: bool,
    pending: &'a AtomicUsize,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.spans, Ordering::Relaxed);
        if !self.exported {
            metrics::trace_spans_dropped(self.spans);
        }
    }
}

/// The exporter's HTTP client: reqwest's blocking one, on the TLS the service links already.
/// The SDK exports from a thread of its own, where blocking is what is wanted.
#[derive(Debug)]
struct BlockingClient(reqwest::blocking::Client);

impl BlockingClient {
    /// Built on a thread of its own: reqwest's blocking client refuses to start inside an
    /// async runtime, where the service starts.
    fn new() -> Result<Self, TracesError> {
        std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
        })
        .join()
        .map_err(|_| TracesError("building the HTTP client panicked".into()))?
        .map(Self)
        .map_err(|e| TracesError(e.to_string()))
    }
}

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::blocking::Request::try_from(request)?;
        let response = self.0.execute(request)?;
        let mut answer = Response::builder().status(response.status().as_u16());
        for (name, value) in response.headers() {
            answer = answer.header(name.as_str(), value.as_bytes());
        }
        Ok(answer.body(response.bytes()?)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::Mutex;

    use opentelemetry::trace::{Span as _, Tracer as _};
    use opentelemetry_sdk::error::OTelSdkError;

    use super::*;
    use crate::metrics::{render, PoolSnapshot, Snapshot};

    /// A collector that is gone: its first export hangs until released, and every export fails.
    #[derive(Debug)]
    struct Gone(Mutex<Option<mpsc::Receiver<()>>>);

    impl SpanExporter for Gone {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let hanging = self.0.lock().unwrap().take();
            if let Some(release) = hanging {
                let _ = release.recv();
            }
            Err(OTelSdkError::InternalFailure("connection refused".into()))
        }
    }

    fn dropped() -> u64 {
        let text = render(&Snapshot {
            pool: PoolSnapshot::default(),
            mailbox_depths: vec![0],
            executor_restarts: 0,
        })
        .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("ordersvc_trace_spans_dropped_total "))
            .and_then(|value| value.parse().ok())
            .expect("the counter is rendered")
    }

    #[test]
    fn spans_beyond_the_bound_and_those_of_failed_exports_are_dropped_and_counted() {
        let (release, hang) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let batches = BatchSpanProcessor::builder(Counted {
            exporter: Gone(Mutex::new(Some(hang))),
            pending: Arc::clone(&pending),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_PENDING)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                batches,
                pending: Arc::clone(&pending),
            })
            .build();
        let tracer = provider.tracer("test");
        let before = dropped();
        let beyond = 100;

        for _ in 0..MAX_PENDING + beyond {
            tracer.start("request").end();
        }

        assert_eq!(
            pending.load(Ordering::Relaxed),
            MAX_PENDING,
            "no export has ended: the bound is full"
        );
        assert_eq!(dropped() - before, beyond as u64, "the spans beyond it");
        release.send(()).unwrap();
        // Every export fails.
        let _ = provider.force_flush();
        assert_eq!(pending.load(Ordering::Relaxed), 0, "every export has ended");
        assert_eq!(
            dropped() - before,
            (MAX_PENDING + beyond) as u64,
            "and lost its spans"
        );
    }
}
