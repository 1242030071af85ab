//! Audio prices, on LiteLLM's cost basis: a transcription costs its audio's seconds (the
//! answer's `usage.seconds` or `duration`) at the per-second rate, a speech call its input's
//! characters at the per-character rate. The built-in rates are OpenAI's and Azure's audio
//! models from LiteLLM's model_prices_and_context_window.json (MIT, Copyright (c) 2023 Berri
//! AI); a deployment's `input_cost_per_second`, `output_cost_per_second` and
//! `input_cost_per_character` replace them.

use crate::pricing::Nanos;

/// `(model, USD per second of audio transcribed, USD per character spoken)`.
const BUILTIN: &[(&str, Option<f64>, Option<f64>)] = &[
    ("whisper-1", Some(0.0001), None),
    ("whisper", Some(0.0001), None),
    ("gpt-4o-transcribe", Some(0.0001), None),
    ("gpt-4o-transcribe-diarize", Some(0.0001), None),
    ("gpt-4o-mini-transcribe", Some(0.00005), None),
    ("gpt-4o-mini-transcribe-2025-03-20", Some(0.00005), None),
    ("gpt-4o-mini-transcribe-2025-12-15", Some(0.00005), None),
    ("gpt-transcribe", Some(0.000075), None),
    ("gpt-realtime-whisper", Some(0.000283333333333), None),
    ("gpt-live-transcribe", Some(0.000283333333333), None),
    ("tts-1", None, Some(0.000015)),
    ("tts-1-1106", None, Some(0.000015)),
    ("tts-1-hd", None, Some(0.00003)),
    ("tts-1-hd-1106", None, Some(0.00003)),
];

/// Azure's own rates where they differ from OpenAI's.
const AZURE: &[(&str, Option<f64>, Option<f64>)] = &[("tts-1-hd", None, Some(0.000033))];

/// The audio rates a deployment's config sets (`litellm_params` or `model_info`), USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AudioOverride {
    pub input_cost_per_second: Option<f64>,
    pub output_cost_per_second: Option<f64>,
    pub input_cost_per_character: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AudioPrice {
    /// USD per second of audio transcribed.
    pub per_second: Option<f64>,
    /// USD per character of speech input.
    pub per_character: Option<f64>,
}

impl AudioPrice {
    /// The rates for a deployment of `provider` serving `model` (its name at the provider,
    /// or `base_model`), the config's fields first.
    pub fn for_deployment(provider: &str, model: &str, over: &[AudioOverride]) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        let find = |t: &[(&str, Option<f64>, Option<f64>)]| {
            t.iter()
                .find(|(m, _, _)| *m == name)
                .map(|(_, s, c)| (*s, *c))
        };
        let (s, c) = (provider == "azure")
            .then(|| find(AZURE))
            .flatten()
            .or_else(|| find(BUILTIN))
            .unwrap_or((None, None));
        // LiteLLM bills transcription at the output rate when there is one, else the input's.
        let configured_second = over.iter().find_map(|f| {
            f.output_cost_per_second
                .filter(|r| *r > 0.0)
                .or(f.input_cost_per_second)
        });
        let configured_char = over.iter().find_map(|f| f.input_cost_per_character);
        AudioPrice {
            per_second: configured_second.or(s),
            per_character: configured_char.or(c),
        }
    }

    /// A transcription of `seconds` of audio.
    pub fn transcription(&self, seconds: f64) -> Option<Nanos> {
        usd(self.per_second? * seconds)
    }

    /// Speech of `chars` characters.
    pub fn speech(&self, chars: usize) -> Option<Nanos> {
        usd(self.per_character? * chars as f64)
    }
}

fn usd(v: f64) -> Option<Nanos> {
    idlehands_store::money::usd_to_nanos(v).and_then(|n| u64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rates_and_config_overrides() {
        let p = AudioPrice::for_deployment("openai", "openai/whisper-1", &[]);
        assert_eq!(p.transcription(30.0), Some(3_000_000));
        let p = AudioPrice::for_deployment("openai", "tts-1", &[]);
        assert_eq!(p.speech(1000), Some(15_000_000));
        assert_eq!(p.transcription(1.0), None);
        let p = AudioPrice::for_deployment("azure", "tts-1-hd", &[]);
        assert_eq!(p.per_character, Some(0.000033));
        let over = AudioOverride {
            input_cost_per_second: Some(0.001),
            ..AudioOverride::default()
        };
        let p = AudioPrice::for_deployment("hosted_vllm", "my-whisper", &[over]);
        assert_eq!(p.transcription(2.0), Some(2_000_000));
    }
}
