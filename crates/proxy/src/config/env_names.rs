//! The environment variables read at load for the modules that act on them: their values
//! reach those modules through [`super::ProxyConfig`] (`observe_env`, `pass_through_env`), so
//! that the request path never reads the environment.

/// OpenTelemetry export (`otel` callback).
pub const OTEL: [&str; 12] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_QUEUE_SIZE",
];

/// LiteLLM's `generic_api` logging callback.
pub const GENERIC_API: [&str; 5] = [
    "GENERIC_LOGGER_ENDPOINT",
    "GENERIC_LOGGER_HEADERS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FLUSH_INTERVAL_SECONDS",
    "GENERIC_LOGGER_MAX_QUEUE_SIZE",
];

/// `general_settings.alerting` webhooks.
pub const ALERTING: [&str; 3] = ["SLACK_WEBHOOK_URL", "ALERTING_WEBHOOK_URL", "WEBHOOK_URL"];

/// `/health/drain`'s token when `general_settings.drain_endpoint_token` is not set, and how
/// long it waits.
pub const DRAIN: [&str; 2] = ["DRAIN_ENDPOINT_TOKEN", "GRACEFUL_SHUTDOWN_TIMEOUT"];

/// The provider pass-through routes' keys and bases (`environment_variables:` seen first).
pub const PASS_THROUGH: [&str; 12] = [
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_API_BASE",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_BASE",
    "VLLM_API_BASE",
    "VLLM_API_KEY",
    "OLLAMA_API_BASE",
    "OLLAMA_API_KEY",
];
