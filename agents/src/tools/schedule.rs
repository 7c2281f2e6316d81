//! Crew scheduling under constraints: skills, travel distance, weather windows, and no
//! crew booked twice on a day.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::weather::miles;
use super::{DomainTool, args, bad, round2};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![DomainTool {
        name: "operations.schedule_crews",
        description: "Assigns jobs to crews day by day: a crew must have every skill the job needs, live within max_travel_miles, and be free; jobs run only on workable (weather) days. Higher priority first, then earliest date; among crews, earliest start then shortest travel. Jobs that cannot fit are listed with the reason.",
        parameters: || {
            json!({"type": "object", "required": ["jobs", "crews", "days"], "properties": {
                "jobs": {"type": "array", "items": {"type": "object", "required": ["id", "lat", "lon"], "properties": {
                    "id": {}, "lat": {"type": "number"}, "lon": {"type": "number"},
                    "days": {"type": "integer", "minimum": 1, "description": "workable days the job takes, default 1"},
                    "skills": {"type": "array", "items": {"type": "string"}},
                    "priority": {"type": "integer", "description": "higher is scheduled first"},
                    "earliest": {"type": "string", "description": "first allowed date, YYYY-MM-DD"}}}},
                "crews": {"type": "array", "items": {"type": "object", "required": ["id", "lat", "lon"], "properties": {
                    "id": {}, "lat": {"type": "number"}, "lon": {"type": "number"},
                    "skills": {"type": "array", "items": {"type": "string"}},
                    "unavailable": {"type": "array", "items": {"type": "string"}}}}},
                "days": {"type": "array", "items": {"type": "object", "required": ["date"], "properties": {
                    "date": {"type": "string"}, "workable": {"type": "boolean", "description": "false for rain, high wind; default true"}}}},
                "max_travel_miles": {"type": "number", "exclusiveMinimum": 0, "description": "default 60"}}})
        },
        run: schedule,
    }]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    id: Value,
    lat: f64,
    lon: f64,
    #[serde(default = "one")]
    days: usize,
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default)]
    priority: i64,
    earliest: Option<String>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Crew {
    id: Value,
    lat: f64,
    lon: f64,
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default)]
    unavailable: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Day {
    date: String,
    #[serde(default = "yes")]
    workable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleArgs {
    jobs: Vec<Job>,
    crews: Vec<Crew>,
    days: Vec<Day>,
    max_travel_miles: Option<f64>,
}

fn schedule(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "operations.schedule_crews";
    let a: ScheduleArgs = args(TOOL, input)?;
    let max_travel = a.max_travel_miles.unwrap_or(60.0);
    if a.jobs.iter().any(|j| j.days == 0) {
        return Err(bad(TOOL, "a job's `days` must be at least 1"));
    }
    // Workable days only, in calendar order; a job's days need not be adjacent in the
    // calendar (work pauses for rain) but are consecutive among workable days.
    let workable: Vec<&str> = a
        .days
        .iter()
        .filter(|d| d.workable)
        .map(|d| d.date.as_str())
        .collect();
    let mut booked: HashSet<(usize, &str)> = HashSet::new();
    for (c, crew) in a.crews.iter().enumerate() {
        for date in &crew.unavailable {
            booked.insert((c, date.as_str()));
        }
    }

    let mut order: Vec<usize> = (0..a.jobs.len()).collect();
    order.sort_by(|&x, &y| {
        let (jx, jy) = (&a.jobs[x], &a.jobs[y]);
        jy.priority
            .cmp(&jx.priority)
            .then_with(|| jx.earliest.cmp(&jy.earliest))
            .then(x.cmp(&y))
    });

    let mut assignments = Vec::new();
    let mut unscheduled = Vec::new();
    for j in order {
        let job = &a.jobs[j];
        let skilled: Vec<usize> = (0..a.crews.len())
            .filter(|&c| job.skills.iter().all(|s| a.crews[c].skills.contains(s)))
            .collect();
        if skilled.is_empty() {
            unscheduled.push(json!({"job": job.id, "reason": format!("no crew has the skills {:?}", job.skills)}));
            continue;
        }
        let reachable: Vec<(usize, f64)> = skilled
            .into_iter()
            .map(|c| (c, miles(a.crews[c].lat, a.crews[c].lon, job.lat, job.lon)))
            .filter(|(_, d)| *d <= max_travel)
            .collect();
        if reachable.is_empty() {
            unscheduled.push(json!({"job": job.id, "reason": format!("no skilled crew within {max_travel} miles")}));
            continue;
        }
        let first = workable
            .iter()
            .position(|d| job.earliest.as_deref().is_none_or(|e| *d >= e))
            .unwrap_or(workable.len());
        // The earliest start any reachable crew can make, then the shortest travel.
        let best = (first..workable.len())
            .filter(|&start| start + job.days <= workable.len())
            .find_map(|start| {
                reachable
                    .iter()
                    .filter(|(c, _)| {
                        workable[start..start + job.days]
                            .iter()
                            .all(|d| !booked.contains(&(*c, *d)))
                    })
                    .min_by(|x, y| x.1.total_cmp(&y.1))
                    .map(|&(c, d)| (start, c, d))
            });
        match best {
            Some((start, c, travel)) => {
                let dates = &workable[start..start + job.days];
                for d in dates {
                    booked.insert((c, d));
                }
                assignments.push(json!({
                    "job": job.id,
                    "crew": a.crews[c].id,
                    "dates": dates,
                    "travel_miles": round2(travel),
                }));
            }
            None => unscheduled.push(json!({
                "job": job.id,
                "reason": format!("no crew is free for {} workable day(s) in the window", job.days),
            })),
        }
    }
    Ok(json!({
        "assignments": assignments,
        "unscheduled": unscheduled,
        "workable_days": workable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week() -> Value {
        json!([
            {"date": "2026-12-01"},
            {"date": "2026-12-02", "workable": false},
            {"date": "2026-12-03"},
            {"date": "2026-12-04"}
        ])
    }

    #[test]
    fn skills_weather_and_no_double_booking() {
        let out = schedule(json!({
            "crews": [
                {"id": "A", "lat": 39.70, "lon": -104.90, "skills": ["shingle"]},
                {"id": "B", "lat": 39.90, "lon": -105.10, "skills": ["shingle", "metal"]}
            ],
            "jobs": [
                {"id": "j1", "lat": 39.71, "lon": -104.91, "days": 2, "skills": ["shingle"]},
                {"id": "j2", "lat": 39.72, "lon": -104.92, "skills": ["shingle"]},
                {"id": "j3", "lat": 39.89, "lon": -105.09, "skills": ["metal"], "priority": 5},
                {"id": "j4", "lat": 39.70, "lon": -104.90, "skills": ["slate"]}
            ],
            "days": week()
        }))
        .unwrap();
        let a = out["assignments"].as_array().unwrap();
        // j3 (priority 5) first: only B has metal. j1 takes A for two workable days,
        // skipping the rain day. j2 finds both crews busy on the 1st; B is free on the 3rd.
        assert_eq!(
            a[0],
            json!({"job": "j3", "crew": "B", "dates": ["2026-12-01"], "travel_miles": 0.87})
        );
        assert_eq!(a[1]["job"], "j1");
        assert_eq!(a[1]["crew"], "A");
        assert_eq!(a[1]["dates"], json!(["2026-12-01", "2026-12-03"]));
        assert_eq!(a[2]["job"], "j2");
        assert_eq!(a[2]["dates"], json!(["2026-12-03"]));
        assert_eq!(a[2]["crew"], "B");
        assert_eq!(
            out["unscheduled"],
            json!([{"job": "j4", "reason": "no crew has the skills [\"slate\"]"}])
        );
        // No crew works two jobs on one day.
        let mut seen = HashSet::new();
        for x in a {
            for d in x["dates"].as_array().unwrap() {
                assert!(seen.insert((x["crew"].to_string(), d.to_string())), "{x}");
            }
        }
    }

    #[test]
    fn too_far_and_no_window_are_explained() {
        let out = schedule(json!({
            "crews": [{"id": "A", "lat": 39.7, "lon": -104.9, "unavailable": ["2026-12-03", "2026-12-04"]}],
            "jobs": [
                {"id": "far", "lat": 41.0, "lon": -104.9},
                {"id": "long", "lat": 39.7, "lon": -104.9, "days": 2}
            ],
            "days": week()
        }))
        .unwrap();
        assert_eq!(out["assignments"], json!([]));
        let reasons: Vec<&str> = out["unscheduled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["reason"].as_str().unwrap())
            .collect();
        assert_eq!(
            reasons,
            [
                "no skilled crew within 60 miles",
                "no crew is free for 2 workable day(s) in the window"
            ]
        );
    }
}
