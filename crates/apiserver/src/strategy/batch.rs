//! batch/v1: jobs (with their generated selector) and cron jobs.

use serde_json::{Value, json};

use super::Strategy;
use super::apps::validate_selector_and_template;
use super::pod::default_pod_spec;
use super::table::{AGE, Column, NAME, age_cell, age_of, arr, col, i, name_cell, or_none, s, selector_string, wide};
use crate::error::Cause;

/// Jobs: upstream generates the selector from the job's uid unless `manualSelector` is set.
pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("parallelism").or_insert(json!(1));
            spec.entry("completions").or_insert(json!(1));
            spec.entry("backoffLimit").or_insert(json!(6));
            spec.entry("completionMode").or_insert(json!("NonIndexed"));
            spec.entry("suspend").or_insert(json!(false));
            spec.entry("manualSelector").or_insert(json!(false));
            spec.entry("podReplacementPolicy")
                .or_insert(json!("TerminatingOrFailed"));
            if let Some(pod) = spec
                .get_mut("template")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                pod.entry("restartPolicy").or_insert(json!("Never"));
                default_pod_spec(pod);
            }
        }
    }

    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
        if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
            return;
        }
        let uid = s(obj, "/metadata/uid").to_string();
        let name = s(obj, "/metadata/name").to_string();
        let labels = json!({
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        });
        obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        if !obj
            .pointer("/spec/template/metadata/labels")
            .is_some_and(Value::is_object)
        {
            obj["spec"]["template"]["metadata"]["labels"] = json!({});
        }
        for (k, v) in labels.as_object().into_iter().flatten() {
            obj["spec"]["template"]["metadata"]["labels"][k] = v.clone();
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = if obj.pointer("/spec/selector").is_some() {
            validate_selector_and_template(obj, old)
        } else {
            super::pod::validate_pod_spec(
                obj.pointer("/spec/template/spec").unwrap_or(&Value::Null),
                "spec.template.spec",
            )
        };
        let policy = obj.pointer("/spec/template/spec/restartPolicy");
        if policy.is_some_and(|p| p != "Never" && p != "OnFailure") {
            causes.push(Cause::not_supported(
                "spec.template.spec.restartPolicy",
                policy.unwrap_or(&Value::Null),
                &["OnFailure", "Never"],
            ));
        }
        if let Some(old) = old
            && old.pointer("/spec/template") != obj.pointer("/spec/template")
            && old.pointer("/spec/suspend") != Some(&json!(true))
        {
            causes.push(Cause::immutable("spec.template"));
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Status"),
            col("Completions"),
            col("Duration"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let conditions = arr(obj, "/status/conditions");
        let has = |ty: &str| conditions.iter().any(|c| c["type"] == ty && c["status"] == "True");
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if has("Suspended") {
            "Suspended"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
            Some(c) => format!("{}/{c}", i(obj, "/status/succeeded")),
            None => format!("{}/1 of {}", i(obj, "/status/succeeded"), i(obj, "/spec/parallelism")),
        };
        let duration = match (s(obj, "/status/startTime"), s(obj, "/status/completionTime")) {
            ("", _) => String::new(),
            (start, "") => age_of(start),
            (start, end) => match (start.parse::<jiff::Timestamp>(), end.parse::<jiff::Timestamp>()) {
                (Ok(a), Ok(b)) => super::table::human_duration(b.duration_since(a).as_secs()),
                _ => String::new(),
            },
        };
        let containers = arr(obj, "/spec/template/spec/containers");
        vec![
            name_cell(obj),
            json!(status),
            json!(completions),
            json!(duration),
            age_cell(obj),
            json!(containers.iter().map(|c| s(c, "/name")).collect::<Vec<_>>().join(",")),
            json!(containers.iter().map(|c| s(c, "/image")).collect::<Vec<_>>().join(",")),
            or_none(selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null))),
        ]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}

/// Cron jobs.
pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("concurrencyPolicy").or_insert(json!("Allow"));
            spec.entry("suspend").or_insert(json!(false));
            spec.entry("successfulJobsHistoryLimit").or_insert(json!(3));
            spec.entry("failedJobsHistoryLimit").or_insert(json!(1));
            if let Some(pod) = spec
                .get_mut("jobTemplate")
                .and_then(|t| t.pointer_mut("/spec/template/spec"))
                .and_then(Value::as_object_mut)
            {
                default_pod_spec(pod);
            }
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let schedule = s(obj, "/spec/schedule");
        if schedule.is_empty() {
            causes.push(Cause::required("spec.schedule"));
        } else if !schedule.starts_with('@') && schedule.split_whitespace().count() != 5 {
            causes.push(Cause::invalid(
                "spec.schedule",
                &obj["spec"]["schedule"],
                "expected exactly 5 fields",
            ));
        }
        causes.extend(super::pod::validate_pod_spec(
            obj.pointer("/spec/jobTemplate/spec/template/spec")
                .unwrap_or(&Value::Null),
            "spec.jobTemplate.spec.template.spec",
        ));
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Schedule"),
            col("Timezone"),
            col("Suspend"),
            col("Active"),
            col("Last Schedule"),
            AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let containers = arr(obj, "/spec/jobTemplate/spec/template/spec/containers");
        let last = match s(obj, "/status/lastScheduleTime") {
            "" => "<none>".to_string(),
            t => age_of(t),
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/schedule")),
            or_none(s(obj, "/spec/timeZone")),
            json!(if obj.pointer("/spec/suspend") == Some(&json!(true)) {
                "True"
            } else {
                "False"
            }),
            json!(arr(obj, "/status/active").len()),
            json!(last),
            age_cell(obj),
            json!(containers.iter().map(|c| s(c, "/name")).collect::<Vec<_>>().join(",")),
            json!(containers.iter().map(|c| s(c, "/image")).collect::<Vec<_>>().join(",")),
            or_none(selector_string(
                obj.pointer("/spec/jobTemplate/spec/selector").unwrap_or(&Value::Null),
            )),
        ]
    }
}
