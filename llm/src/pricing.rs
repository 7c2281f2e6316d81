//! List prices per model, for cost estimates.

use super::Usage;

/// US dollars per million tokens: (input, output). Vendors' published list prices (2025);
/// the first matching prefix wins, so longer names come first. `local:` models cost nothing.
const PRICES: &[(&str, f64, f64)] = &[
    ("local:", 0.0, 0.0),
    ("openai:text-embedding-3-small", 0.02, 0.0),
    ("openai:text-embedding-3-large", 0.13, 0.0),
    ("openai:text-embedding-ada-002", 0.10, 0.0),
    ("openai:gpt-4o-mini", 0.15, 0.60),
    ("openai:gpt-4o", 2.50, 10.00),
    ("openai:gpt-4.1-nano", 0.10, 0.40),
    ("openai:gpt-4.1-mini", 0.40, 1.60),
    ("openai:gpt-4.1", 2.00, 8.00),
    ("openai:gpt-5-nano", 0.05, 0.40),
    ("openai:gpt-5-mini", 0.25, 2.00),
    ("openai:gpt-5", 1.25, 10.00),
    ("anthropic:claude-haiku-4", 1.00, 5.00),
    ("anthropic:claude-3-5-haiku", 0.80, 4.00),
    ("anthropic:claude-sonnet-4", 3.00, 15.00),
    ("anthropic:claude-3-7-sonnet", 3.00, 15.00),
    ("anthropic:claude-opus-4", 15.00, 75.00),
    ("gemini:gemini-2.5-flash-lite", 0.10, 0.40),
    ("gemini:gemini-2.5-flash", 0.30, 2.50),
    ("gemini:gemini-2.5-pro", 1.25, 10.00),
    ("gemini:gemini-2.0-flash", 0.10, 0.40),
    ("perplexity:sonar-pro", 3.00, 15.00),
    ("perplexity:sonar-reasoning", 1.00, 5.00),
    ("perplexity:sonar", 1.00, 1.00),
];

/// The price of `model` (a model string, e.g. `openai:gpt-4o-mini`), if listed.
pub fn price(model: &str) -> Option<(f64, f64)> {
    PRICES
        .iter()
        .find(|(prefix, _, _)| model.starts_with(prefix))
        .map(|&(_, input, output)| (input, output))
}

/// What `usage` of `model` costs in US dollars, if its price is listed.
pub fn cost_usd(model: &str, usage: Usage) -> Option<f64> {
    price(model).map(|(input, output)| {
        (usage.input_tokens as f64 * input + usage.output_tokens as f64 * output) / 1_000_000.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_names_win_and_unknown_models_have_no_price() {
        assert_eq!(price("openai:gpt-4o-mini-2024-07-18"), Some((0.15, 0.60)));
        assert_eq!(price("openai:gpt-4o"), Some((2.50, 10.00)));
        assert_eq!(price("openai-compat:http://x#llama3"), None);
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
        };
        let cost = cost_usd("anthropic:claude-sonnet-4-5", usage).unwrap_or(-1.0);
        assert!((cost - 0.0105).abs() < 1e-12, "{cost}");
        assert_eq!(cost_usd("local:smollm2-135m", usage), Some(0.0));
    }
}
