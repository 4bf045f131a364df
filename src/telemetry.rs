//! Logging: human-readable by default, JSON for log pipelines; `RUST_LOG` overrides the level.
//! Traces: OpenTelemetry over OTLP/HTTP (protobuf), only when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other
//! `OTEL_*` variables (headers, timeout, service name, sampler, batch delays) work as the
//! OpenTelemetry SDK documents them.
//!
//! Every step of an order is a span (`step`), with children for its claim, its `pay.do`, each
//! order query and its write. Their attributes: the order number, the state from and to, the
//! attempt, ATRIP's status code, the lease token. Never card data, a CVV or a secret: the spans
//! carry only these fields and the log lines of the step, which hold none either. A row's
//! `traceparent` (W3C Trace Context, written by the enqueuer) makes its steps children of that
//! trace; log lines inside a step carry its `trace_id`.

use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogSettings;

/// The tracer provider, when traces are exported: flushed by [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber (once; later calls are ignored). Logs go to stderr so that
/// command output on stdout (tables, JSON) stays clean. Starts the trace export when the
/// environment asks for it (from inside the tokio runtime: the exporter runs on it).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn,hyper=warn", settings.level)));
    let (otel, said) = match traces_wanted() {
        None => (None, None),
        Some(endpoint) => match exporting() {
            Ok(tracer) => (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(format!("traces are exported over OTLP/HTTP to {endpoint}")),
            ),
            Err(e) => {
                // The error may quote the endpoint as set, credentials and all.
                let mut why = e.to_string();
                for name in [
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                ] {
                    if let Some(raw) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
                        why = why.replace(&raw, &endpoint);
                    }
                }
                (
                    None,
                    Some(format!(
                        "traces are NOT exported: the OTLP exporter for {endpoint} could not be built ({why})"
                    )),
                )
            }
        },
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if settings.format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    // The whole list: a line inside a step's `pay.do` or `write` span still
                    // carries the step's order, job and trace id.
                    .with_span_list(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
            .try_init()
    };
    if let Some(said) = said {
        tracing::info!("{said}");
    }
}

/// Whether traces are exported, and where: the endpoint, as set (its userinfo and query left
/// out: they may carry a credential).
pub fn traces_wanted() -> Option<String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    let endpoint =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    Some(match reqwest::Url::parse(&endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => "an endpoint that is not a URL".to_owned(),
    })
}

/// What the start line says about traces.
pub fn traces_line() -> String {
    match (traces_wanted(), PROVIDER.get()) {
        (Some(endpoint), Some(_)) => format!("exported over OTLP/HTTP to {endpoint}"),
        (Some(_), None) => "not exported (the exporter could not be built)".to_owned(),
        (None, _) => "off (OTEL_EXPORTER_OTLP_ENDPOINT is not set)".to_owned(),
    }
}

fn exporting() -> Result<opentelemetry_sdk::trace::Tracer, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    // The endpoint, headers and timeout come from the OTEL_* variables.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| opentelemetry_otlp::ExporterBuildError::InternalFailure(e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let batch =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("ticketing-tracker");
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("ticketing-tracker");
    opentelemetry::global::set_tracer_provider(provider.clone());
    let _ = PROVIDER.set(provider);
    Ok(tracer)
}

/// Sends the spans still buffered (at the end of `run`); off the runtime's worker threads,
/// since the flush waits for the exporter task that runs on them.
pub async fn shutdown() {
    if let Some(provider) = PROVIDER.get().cloned() {
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The span of one step of an order: a child of the row's `traceparent` when it has a valid
/// one, with the claim as a child span over the time the claim statement took.
pub fn step_span(
    order_no: &str,
    job_id: i64,
    from: &str,
    attempt: i32,
    lease_token: i64,
    traceparent: Option<&str>,
    claim: (SystemTime, SystemTime),
) -> tracing::Span {
    let span = tracing::info_span!(
        "step",
        order_no = %order_no,
        job_id,
        state_from = %from,
        state_to = tracing::field::Empty,
        attempt,
        lease_token,
        trace_id = tracing::field::Empty,
        otel.name = %format!("step {from}"),
    );
    let parent = traceparent.and_then(parse_traceparent);
    if let Some(cx) = &parent {
        let _ = span.set_parent(cx.clone());
    }
    let exported = span.context().span().span_context().clone();
    if exported.is_valid() {
        span.record("trace_id", tracing::field::display(exported.trace_id()));
        // The claim, with its own times, under the step.
        let tracer = opentelemetry::global::tracer("ticketing-tracker");
        let mut claim_span = tracer
            .span_builder("claim")
            .with_start_time(claim.0)
            .with_attributes([
                KeyValue::new("order_no", order_no.to_owned()),
                KeyValue::new("state_from", from.to_owned()),
                KeyValue::new("lease_token", lease_token),
            ])
            .start_with_context(&tracer, &span.context());
        opentelemetry::trace::Span::end_with_timestamp(&mut claim_span, claim.1);
    } else if let Some(cx) = &parent {
        // No export: the log lines still carry the enqueuer's trace.
        span.record(
            "trace_id",
            tracing::field::display(cx.span().span_context().trace_id()),
        );
    }
    span
}

/// A W3C `traceparent` (version 00's layout: `00-<32 hex>-<16 hex>-<2 hex>`, neither id all
/// zeros) as a remote parent; anything else is ignored (tracing never holds an order up).
fn parse_traceparent(value: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::TextMapPropagator;
    let value = value.trim();
    if value.len() != 55 || !value.is_ascii() {
        return None;
    }
    let carrier: std::collections::HashMap<String, String> =
        [("traceparent".to_owned(), value.to_ascii_lowercase())].into();
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_only_when_it_is_one() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(good).expect("valid");
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
