//! The built-in price table: the models people use most, so that cost works with no price file.
//!
//! Rates are pico-USD (1e-12 USD) per token, written as integers so that no float ever touches
//! money. Load a LiteLLM-format price file (`litellm_settings.model_cost_map_path` or
//! `LITELLM_MODEL_COST_MAP_PATH`) for anything not listed here.

/// One row: name, provider, mode, input, output, cache read, cache creation, reasoning,
/// input above 200k, output above 200k, cache read above 200k, max input, max output.
pub(crate) type Row = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    u64,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

#[rustfmt::skip]
pub(crate) const ROWS: &[Row] = &[
    ("gpt-4o", "openai", "chat", 2500000, 10000000, Some(1250000), None, None, None, None, None, Some(128000), Some(16384)),
    ("gpt-4o-mini", "openai", "chat", 150000, 600000, Some(75000), None, None, None, None, None, Some(128000), Some(16384)),
    ("gpt-4.1", "openai", "chat", 2000000, 8000000, Some(500000), None, None, None, None, None, Some(1047576), Some(32768)),
    ("gpt-4.1-mini", "openai", "chat", 400000, 1600000, Some(100000), None, None, None, None, None, Some(1047576), Some(32768)),
    ("gpt-4.1-nano", "openai", "chat", 100000, 400000, Some(25000), None, None, None, None, None, Some(1047576), Some(32768)),
    ("o1", "openai", "chat", 15000000, 60000000, Some(7500000), None, None, None, None, None, Some(200000), Some(100000)),
    ("o3", "openai", "chat", 2000000, 8000000, Some(500000), None, None, None, None, None, Some(200000), Some(100000)),
    ("o3-mini", "openai", "chat", 1100000, 4400000, Some(550000), None, None, None, None, None, Some(200000), Some(100000)),
    ("o4-mini", "openai", "chat", 1100000, 4400000, Some(275000), None, None, None, None, None, Some(200000), Some(100000)),
    ("gpt-5", "openai", "chat", 1250000, 10000000, Some(125000), None, None, None, None, None, Some(272000), Some(128000)),
    ("gpt-5-mini", "openai", "chat", 250000, 2000000, Some(25000), None, None, None, None, None, Some(272000), Some(128000)),
    ("gpt-5-nano", "openai", "chat", 50000, 400000, Some(5000), None, None, None, None, None, Some(272000), Some(128000)),
    ("gpt-5.1", "openai", "chat", 1250000, 10000000, Some(125000), None, None, None, None, None, Some(272000), Some(128000)),
    ("gpt-4-turbo", "openai", "chat", 10000000, 30000000, None, None, None, None, None, None, Some(128000), Some(4096)),
    ("gpt-3.5-turbo", "openai", "chat", 500000, 1500000, None, None, None, None, None, None, Some(16385), Some(4096)),
    ("claude-opus-4-6", "anthropic", "chat", 5000000, 25000000, Some(500000), Some(6250000), None, None, None, None, Some(1000000), Some(128000)),
    ("claude-opus-4-5", "anthropic", "chat", 5000000, 25000000, Some(500000), Some(6250000), None, None, None, None, Some(200000), Some(64000)),
    ("claude-sonnet-4-5", "anthropic", "chat", 3000000, 15000000, Some(300000), Some(3750000), None, None, None, None, Some(200000), Some(64000)),
    ("claude-haiku-4-5", "anthropic", "chat", 1000000, 5000000, Some(100000), Some(1250000), None, None, None, None, Some(200000), Some(64000)),
    ("gemini/gemini-2.5-pro", "gemini", "chat", 1250000, 10000000, Some(125000), None, None, Some(2500000), Some(15000000), Some(250000), Some(1048576), Some(65536)),
    ("gemini/gemini-2.5-flash", "gemini", "chat", 300000, 2500000, Some(30000), None, Some(2500000), None, None, None, Some(1048576), Some(65536)),
    ("gemini/gemini-2.5-flash-lite", "gemini", "chat", 100000, 400000, Some(10000), None, Some(400000), None, None, None, Some(1048576), Some(65536)),
    ("gemini-2.5-pro", "vertex_ai-language-models", "chat", 1250000, 10000000, Some(125000), None, None, Some(2500000), Some(15000000), Some(250000), Some(1048576), Some(65535)),
    ("gemini-2.5-flash", "vertex_ai-language-models", "chat", 300000, 2500000, Some(30000), None, Some(2500000), None, None, None, Some(1048576), Some(65535)),
    ("text-embedding-3-small", "openai", "embedding", 20000, 0, None, None, None, None, None, None, Some(8191), None),
    ("text-embedding-3-large", "openai", "embedding", 130000, 0, None, None, None, None, None, None, Some(8191), None),
    ("text-embedding-ada-002", "openai", "embedding", 100000, 0, None, None, None, None, None, None, Some(8191), None),
    ("deepseek/deepseek-chat", "deepseek", "chat", 280000, 420000, Some(28000), Some(0), None, None, None, None, Some(131072), Some(8192)),
    ("mistral/mistral-large-latest", "mistral", "chat", 500000, 1500000, Some(50000), None, None, None, None, None, Some(262144), Some(262144)),
];
