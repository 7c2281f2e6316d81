//! Structured answers: the JSON in a model's reply, checked against an output schema. Shared
//! by the agent runtime and the adapters that check answers themselves (`openai-compat:`).

use serde_json::Value;

/// The value in `text` if it is JSON valid against `validator`, or what is wrong with it.
pub fn json_answer(validator: &jsonschema::Validator, text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(strip_fences(text))
        .map_err(|e| format!("the answer is not JSON ({e})"))?;
    problems(validator, &value)?;
    Ok(value)
}

/// What `validator` finds wrong with `value` (at most five problems), with JSON pointers.
pub fn problems(validator: &jsonschema::Validator, value: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Models often wrap JSON in a Markdown code fence; the JSON inside is the answer.
fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .map_or(t, str::trim)
}

#[cfg(test)]
mod tests {
    use super::strip_fences;

    #[test]
    fn code_fences_around_json_are_dropped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
    }
}
