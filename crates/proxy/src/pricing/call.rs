//! The price of one deployment's calls, chosen as LiteLLM's cost calculator chooses it
//! (`select_model_name_for_cost_calc` and the candidates `completion_cost` tries after it):
//!
//! 1. the deployment's own price fields (`input_cost_per_token`, ... in `litellm_params` or
//!    `model_info`), over the price of its `base_model` or model;
//! 2. `model_info.base_model`, under the deployment's provider, else under the base model's own;
//! 3. the model the upstream says answered (`"model"` of the response), under the provider;
//! 4. the deployment's model;
//! 5. else 0, with one warning per model name.
//!
//! Steps 1 and 2 and 4 are resolved once at start-up; step 3 is looked up when the first
//! answer arrives and remembered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use idlehands_wire::Usage;
use parking_lot::{Mutex, RwLock};

use super::{ModelPrice, Nanos, PriceOverride, PriceTable};

/// Providers that serve models on the user's own machines. Their servers answer with whatever
/// name they were started with, which says nothing about a price.
const LOCAL_PROVIDERS: &[&str] = &[
    "ollama",
    "ollama_chat",
    "hosted_vllm",
    "vllm",
    "lm_studio",
    "llamafile",
];

/// Whether a deployment is a local server: by its provider, or by its model's prefix.
pub fn is_local_provider(provider: &str, model: &str) -> bool {
    LOCAL_PROVIDERS.contains(&provider)
        || model
            .split_once('/')
            .is_some_and(|(prefix, _)| LOCAL_PROVIDERS.contains(&prefix))
}

/// Model names already warned about as unpriced, across deployments.
static WARNED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// A model an answer named, and its price if the table has one.
type Answered = (Box<str>, Option<Arc<ModelPrice>>);

/// How one deployment's calls are priced.
#[derive(Debug)]
pub struct CallPricing {
    table: PriceTable,
    provider: String,
    /// `litellm_params.model`, as the warning names it.
    model: String,
    /// A price the config fixes (step 1 or 2): the answer's model is not consulted.
    pinned: Option<Arc<ModelPrice>>,
    /// The deployment's model's price (step 4).
    own: Option<Arc<ModelPrice>>,
    /// Local servers: the answer's model is not consulted and an unpriced call is expected.
    local: bool,
    /// `mock_response` deployments cost what their config says, quietly.
    quiet: bool,
    /// The last model an answer named and its price; a deployment nearly always answers with
    /// one name, so this is looked up once.
    last: RwLock<Option<Answered>>,
    warned: AtomicBool,
}

impl CallPricing {
    /// `model` is `litellm_params.model` as written, `provider` the deployment's provider.
    pub fn new(
        table: &PriceTable,
        provider: &str,
        model: &str,
        base_model: Option<&str>,
        over: &PriceOverride,
        mock: bool,
    ) -> Self {
        let base = base_model.and_then(|b| {
            let found = table
                .model_info(b, Some(provider))
                .or_else(|| table.model_info(b, None));
            if found.is_none() {
                tracing::warn!(
                    model,
                    base_model = b,
                    "model_info.base_model is not in the price table; the call is priced by the model the upstream answers with, else its own"
                );
            }
            found
        });
        let own = table.model_info(model, Some(provider));
        let pinned = if over.is_empty() {
            base
        } else {
            Some(Arc::new(over.apply(base.as_deref().or(own.as_deref()))))
        };
        CallPricing {
            table: table.clone(),
            provider: provider.to_string(),
            model: model.to_string(),
            pinned,
            own,
            local: is_local_provider(provider, model),
            quiet: mock,
            last: RwLock::new(None),
            warned: AtomicBool::new(false),
        }
    }

    /// The price known before any answer: for budget reservations, `max_input_tokens`
    /// routing and default `max_tokens`.
    pub fn before_answer(&self) -> Option<&ModelPrice> {
        self.pinned.as_deref().or(self.own.as_deref())
    }

    /// The price of a call the upstream says `answered` (the response's `model`).
    pub fn price(&self, answered: Option<&str>) -> Option<Arc<ModelPrice>> {
        if let Some(p) = &self.pinned {
            return Some(p.clone());
        }
        if !self.local
            && let Some(name) = answered.filter(|n| !n.is_empty())
            && let Some(p) = self.answered_price(name)
        {
            return Some(p);
        }
        self.own.clone()
    }

    fn answered_price(&self, name: &str) -> Option<Arc<ModelPrice>> {
        if let Some((seen, price)) = &*self.last.read()
            && **seen == *name
        {
            return price.clone();
        }
        let price = self.table.model_info(name, Some(&self.provider));
        *self.last.write() = Some((name.into(), price.clone()));
        price
    }

    /// The cost of a call with this usage; 0 without usage or price, an unknown price warned
    /// about once per model name.
    pub fn cost(&self, usage: Option<&Usage>, answered: Option<&str>) -> Nanos {
        let Some(usage) = usage else { return 0 };
        match self.price(answered) {
            Some(p) => p.cost(usage),
            None => {
                self.warn_unpriced(answered);
                0
            }
        }
    }

    fn warn_unpriced(&self, answered: Option<&str>) {
        if self.quiet || self.local || self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        if WARNED.lock().insert(self.model.clone()) {
            tracing::warn!(
                model = self.model.as_str(),
                answered_by = answered.unwrap_or(""),
                "no price known for this model; its calls cost 0 (set model_info.base_model or input_cost_per_token)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pricing(
        provider: &str,
        model: &str,
        base: Option<&str>,
        over: PriceOverride,
    ) -> CallPricing {
        CallPricing::new(&PriceTable::builtin(), provider, model, base, &over, false)
    }

    fn rates(p: &CallPricing, answered: Option<&str>) -> Option<(u64, u64)> {
        p.price(answered).map(|p| (p.input, p.output))
    }

    const GPT4O: Option<(u64, u64)> = Some((2_500_000, 10_000_000));
    const GPT4O_MINI: Option<(u64, u64)> = Some((150_000, 600_000));

    #[test]
    fn own_price_fields_win_over_everything_and_inherit_the_rest() {
        let over = PriceOverride {
            input: Some(7),
            ..PriceOverride::default()
        };
        let p = pricing("azure", "azure/my-gpt4o", Some("gpt-4o"), over.clone());
        assert_eq!(rates(&p, Some("gpt-4o-mini")), Some((7, 10_000_000)));
        // Without a base model the deployment's own row is the one inherited from.
        let p = pricing("openai", "openai/gpt-4o", None, over.clone());
        assert_eq!(rates(&p, Some("gpt-4o-mini")), Some((7, 10_000_000)));
        // An unknown model priced only by its config.
        let p = pricing("openai", "openai/custom", None, over);
        assert_eq!(rates(&p, None), Some((7, 0)));
        assert_eq!(p.before_answer().map(|p| p.input), Some(7));
    }

    #[test]
    fn base_model_prices_a_custom_deployment_name() {
        // Azure deployment names are the customer's own: base_model says what runs there.
        let p = pricing(
            "azure",
            "azure/prod-chat-eu",
            Some("gpt-4o"),
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, None), GPT4O);
        assert_eq!(
            p.before_answer().unwrap().provider.as_deref(),
            Some("azure")
        );
        // The answer's model does not move a price the config pinned.
        assert_eq!(rates(&p, Some("gpt-4o-mini")), GPT4O);
        // Written with its prefix, too.
        let p = pricing(
            "azure",
            "azure/prod",
            Some("azure/gpt-4o-mini"),
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, None), GPT4O_MINI);
        // A base model the provider does not list is priced under its own provider.
        let p = pricing(
            "openai",
            "openai/proxy-to-claude",
            Some("claude-opus-4-6"),
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, None), Some((5_000_000, 25_000_000)));
    }

    #[test]
    fn an_unknown_base_model_falls_through_to_the_answer_then_the_model() {
        let p = pricing(
            "openai",
            "openai/gpt-4o",
            Some("no-such-base"),
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, Some("gpt-4o-mini")), GPT4O_MINI);
        assert_eq!(rates(&p, None), GPT4O);
    }

    #[test]
    fn the_answers_model_prices_a_custom_name() {
        let p = pricing("openai", "openai/custom", None, PriceOverride::default());
        assert_eq!(p.before_answer(), None);
        assert_eq!(rates(&p, Some("gpt-4o-2024-08-06")), GPT4O);
        // remembered, and a different answer is looked up again
        assert_eq!(rates(&p, Some("gpt-4o-2024-08-06")), GPT4O);
        assert_eq!(rates(&p, Some("gpt-4o-mini")), GPT4O_MINI);
        assert_eq!(rates(&p, Some("something-unlisted")), None);
        // Azure answers with the model behind the deployment.
        let p = pricing(
            "azure",
            "azure/my-deployment",
            None,
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, Some("gpt-4o-mini-2024-07-18")), GPT4O_MINI);
    }

    #[test]
    fn the_answer_comes_before_the_deployments_model_as_in_litellm() {
        let p = pricing("openai", "openai/gpt-4o", None, PriceOverride::default());
        assert_eq!(rates(&p, Some("gpt-4o-mini")), GPT4O_MINI);
        // an answer naming nothing priced leaves the deployment's model
        assert_eq!(rates(&p, Some("my-fine-tune-alias")), GPT4O);
        assert_eq!(rates(&p, None), GPT4O);
        assert_eq!(rates(&p, Some("")), GPT4O);
        // a bare name, its provider found from the table
        let p = pricing(
            "anthropic",
            "claude-opus-4-6",
            None,
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, None), Some((5_000_000, 25_000_000)));
    }

    #[test]
    fn local_servers_cost_nothing_unless_priced() {
        for (provider, model) in [
            ("ollama", "ollama/llama3"),
            ("ollama_chat", "ollama_chat/llama3"),
            ("hosted_vllm", "hosted_vllm/gpt-4o"),
            ("lm_studio", "lm_studio/qwen"),
            ("openai", "llamafile/mistral"),
        ] {
            let p = pricing(provider, model, None, PriceOverride::default());
            // whatever name the server answers with (LiteLLM lists ollama/llama3 at 0)
            assert!(
                rates(&p, Some("gpt-4o")).is_none_or(|r| r == (0, 0)),
                "{model}"
            );
            assert_eq!(p.cost(Some(&Usage::new(1000, 1000)), Some("gpt-4o")), 0);
        }
        let over = PriceOverride {
            input: Some(1_000),
            output: Some(2_000),
            ..PriceOverride::default()
        };
        let p = pricing("hosted_vllm", "hosted_vllm/qwen", None, over);
        assert_eq!(p.cost(Some(&Usage::new(1000, 1000)), Some("qwen")), 3_000);
        let p = pricing(
            "hosted_vllm",
            "hosted_vllm/qwen",
            Some("gpt-4o"),
            PriceOverride::default(),
        );
        assert_eq!(rates(&p, None), GPT4O);
        // LiteLLM lists some Ollama models, at 0.
        let p = pricing("ollama", "ollama/codegeex4", None, PriceOverride::default());
        assert_eq!(rates(&p, None), Some((0, 0)));
    }

    #[test]
    fn an_unpriced_call_costs_0_and_is_warned_about_once_per_model() {
        let logs = idlehands_testkit::CapturedLogs::default();
        let subscriber = logs.subscriber();
        let model = "openai/unpriced-model-for-the-warning-test";
        tracing::subscriber::with_default(subscriber, || {
            let usage = Usage::new(100, 100);
            let a = pricing("openai", model, None, PriceOverride::default());
            assert_eq!(a.cost(Some(&usage), Some("unlisted-answer")), 0);
            assert_eq!(a.cost(Some(&usage), Some("unlisted-answer")), 0);
            // A second deployment of the same model is not warned about again.
            let b = pricing("openai", model, None, PriceOverride::default());
            assert_eq!(b.cost(Some(&usage), None), 0);
            // A call without usage has nothing to price: no warning either.
            let c = pricing(
                "openai",
                "openai/unpriced-and-unused",
                None,
                PriceOverride::default(),
            );
            assert_eq!(c.cost(None, None), 0);
        });
        let text = logs.text();
        assert_eq!(
            text.matches("no price known for this model").count(),
            1,
            "{text}"
        );
        assert!(text.contains(model), "{text}");
        assert!(text.contains("unlisted-answer"), "{text}");
        assert!(!text.contains("unpriced-and-unused"), "{text}");
    }
}
