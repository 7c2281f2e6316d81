//! Brute-force and credential-stuffing detection over authentication logs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{DomainTool, args, bad};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![DomainTool {
        name: "security.detect_bruteforce",
        description: "Finds attacks in login events: brute force (one IP failing on one account `threshold` times within `window_s`), credential stuffing (one IP failing on `distinct_users` accounts within the window), and a success right after such failures (possible compromise).",
        parameters: || {
            json!({"type": "object", "required": ["events"], "properties": {
                "events": {"type": "array", "items": {"type": "object", "required": ["ts", "ip", "user", "success"], "properties": {
                    "ts": {"description": "RFC 3339 time or Unix seconds"}, "ip": {"type": "string"},
                    "user": {"type": "string"}, "success": {"type": "boolean"}}}},
                "window_s": {"type": "integer", "minimum": 1, "description": "default 300"},
                "threshold": {"type": "integer", "minimum": 2, "description": "failures per IP and account, default 10"},
                "distinct_users": {"type": "integer", "minimum": 2, "description": "accounts per IP, default 5"}}})
        },
        run: detect,
    }]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    ts: Value,
    ip: String,
    user: String,
    success: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectArgs {
    events: Vec<Event>,
    window_s: Option<i64>,
    threshold: Option<usize>,
    distinct_users: Option<usize>,
}

fn seconds(ts: &Value) -> Result<i64, String> {
    match ts {
        Value::Number(n) => n
            .as_f64()
            .map(|s| s as i64)
            .ok_or_else(|| format!("{n} is not a time")),
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}")),
        other => Err(format!(
            "{other} is not a time; use RFC 3339 or Unix seconds"
        )),
    }
}

fn iso(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

/// The largest number of times within any `window` seconds, and when that window starts and
/// ends; `times` sorted.
fn densest(times: &[i64], window: i64) -> (usize, i64, i64) {
    let mut best = (0, 0, 0);
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] > window {
            start += 1;
        }
        if end + 1 - start > best.0 {
            best = (end + 1 - start, times[start], times[end]);
        }
    }
    best
}

fn detect(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "security.detect_bruteforce";
    let a: DetectArgs = args(TOOL, input)?;
    let window = a.window_s.unwrap_or(300);
    let threshold = a.threshold.unwrap_or(10);
    let distinct = a.distinct_users.unwrap_or(5);
    if window < 1 {
        return Err(bad(TOOL, "`window_s` must be at least 1"));
    }
    let mut events = Vec::with_capacity(a.events.len());
    for (i, e) in a.events.iter().enumerate() {
        let t = seconds(&e.ts).map_err(|m| bad(TOOL, format!("events[{i}].ts: {m}")))?;
        events.push((t, e));
    }
    events.sort_by_key(|(t, _)| *t);

    let mut failures: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    let mut by_ip: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    let mut findings = Vec::new();
    for (t, e) in &events {
        if e.success {
            // A success from an IP that just failed `threshold` times on the account.
            if let Some(times) = failures.get(&(e.ip.as_str(), e.user.as_str())) {
                let recent = times.iter().filter(|f| t - **f <= window).count();
                if recent >= threshold {
                    findings.push((
                        0,
                        json!({
                            "kind": "possible_compromise", "severity": "critical", "ip": e.ip,
                            "users": [e.user], "failures": recent, "at": iso(*t),
                            "action": "lock the account, end its sessions, force a password reset"
                        }),
                    ));
                }
            }
            continue;
        }
        failures.entry((&e.ip, &e.user)).or_default().push(*t);
        by_ip.entry(&e.ip).or_default().push((*t, &e.user));
    }
    for ((ip, user), times) in &failures {
        let (count, first, last) = densest(times, window);
        if count >= threshold {
            findings.push((
                1,
                json!({
                    "kind": "brute_force", "severity": "high", "ip": ip, "users": [user],
                    "failures": count, "first": iso(first), "last": iso(last),
                    "action": "block the IP and require MFA on the account"
                }),
            ));
        }
    }
    for (ip, attempts) in &by_ip {
        // The widest spread of accounts within one window, with per-account counts kept
        // as the window slides (one pass, not a set per window).
        let mut in_window: BTreeMap<&str, usize> = BTreeMap::new();
        let mut best: (usize, i64, i64, BTreeSet<&str>) = (0, 0, 0, BTreeSet::new());
        let mut start = 0;
        for end in 0..attempts.len() {
            *in_window.entry(attempts[end].1).or_default() += 1;
            while attempts[end].0 - attempts[start].0 > window {
                let user = attempts[start].1;
                if let Some(n) = in_window.get_mut(user) {
                    *n -= 1;
                    if *n == 0 {
                        in_window.remove(user);
                    }
                }
                start += 1;
            }
            if in_window.len() > best.0 {
                best = (
                    in_window.len(),
                    attempts[start].0,
                    attempts[end].0,
                    in_window.keys().copied().collect(),
                );
            }
        }
        if best.0 >= distinct {
            findings.push((1, json!({
                "kind": "credential_stuffing", "severity": "high", "ip": ip,
                "users": best.3, "failures": attempts.len(), "first": iso(best.1), "last": iso(best.2),
                "action": "block the IP; check the accounts against breached-password lists"
            })));
        }
    }
    findings.sort_by_key(|(rank, _)| *rank);
    let findings: Vec<Value> = findings.into_iter().map(|(_, f)| f).collect();
    Ok(json!({"events": events.len(), "attack": !findings.is_empty(), "findings": findings}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, ip: &str, user: &str, success: bool) -> Value {
        json!({"ts": ts, "ip": ip, "user": user, "success": success})
    }

    #[test]
    fn brute_force_then_success_is_a_possible_compromise() {
        let mut events: Vec<Value> = (0..12)
            .map(|i| {
                event(
                    1_800_000_000 + i * 10,
                    "203.0.113.9",
                    "ops@weathercraft.test",
                    false,
                )
            })
            .collect();
        events.push(event(
            1_800_000_130,
            "203.0.113.9",
            "ops@weathercraft.test",
            true,
        ));
        // Normal: one typo, then a success.
        events.push(event(1_800_000_000, "198.51.100.4", "ada", false));
        events.push(event(1_800_000_005, "198.51.100.4", "ada", true));
        let out = detect(json!({"events": events})).unwrap();
        let kinds: Vec<&str> = out["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["possible_compromise", "brute_force"]);
        assert_eq!(out["findings"][1]["failures"], 12);
        assert_eq!(out["findings"][1]["first"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn many_accounts_from_one_ip_is_credential_stuffing() {
        let events: Vec<Value> = (0..6).map(|i| json!({"ts": format!("2026-11-20T10:0{i}:00Z"), "ip": "192.0.2.1", "user": format!("user{i}"), "success": false})).collect();
        let out = detect(json!({"events": events})).unwrap();
        assert_eq!(out["findings"][0]["kind"], "credential_stuffing");
        assert_eq!(out["findings"][0]["users"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn failures_spread_beyond_the_window_are_not_an_attack() {
        let events: Vec<Value> = (0..12)
            .map(|i| event(i * 600, "203.0.113.9", "bob", false))
            .collect();
        let out = detect(json!({"events": events})).unwrap();
        assert_eq!(out["attack"], false);
        let err = detect(
            json!({"events": [{"ts": "yesterday", "ip": "x", "user": "y", "success": false}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("events[0].ts"), "{err}");
    }
}
