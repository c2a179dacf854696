//! Server-side printing: `meta.k8s.io/v1` Tables with the columns kubectl shows.

use serde_json::{Value, json};

/// One table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Ready`.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`.
    pub kind: &'static str,
    /// Display format hint; `name` marks the column holding the object name.
    pub format: &'static str,
    /// 0 = shown by default, 1 = shown with `-o wide`.
    pub priority: u8,
}

/// A default-priority string column.
pub const fn col(name: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 0,
    }
}

/// A default-priority integer column.
pub const fn int(name: &'static str) -> Column {
    Column {
        name,
        kind: "integer",
        format: "",
        priority: 0,
    }
}

/// A `-o wide` string column.
pub const fn wide(name: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 1,
    }
}

/// The `Age` column.
pub const AGE: Column = col("Age");

/// The `Name` column.
pub const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
};

/// The object's name.
pub fn name_cell(obj: &Value) -> Value {
    Value::String(s(obj, "/metadata/name").to_string())
}

/// Reads a value by JSON pointer, as a string (empty when absent or not a string).
pub fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Reads an integer by JSON pointer (0 when absent).
pub fn i(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Reads an array by JSON pointer (empty when absent).
pub fn arr<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `value`, or `<none>` when empty, as kubectl prints missing values.
pub fn or_none(value: impl Into<String>) -> Value {
    let v = value.into();
    Value::String(if v.is_empty() { "<none>".into() } else { v })
}

/// The age of the object from its creationTimestamp.
pub fn age_cell(obj: &Value) -> Value {
    Value::String(age_of(s(obj, "/metadata/creationTimestamp")))
}

/// The age of an RFC 3339 timestamp, as upstream prints it (`<unknown>` when absent).
pub fn age_of(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().duration_since(t).as_secs()),
        Err(_) => "<unknown>".into(),
    }
}

/// Formats a duration in seconds the way kubectl's ages read: `42s`, `5m3s`, `3h`, `12d`, `2y34d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if mins < 10 {
        match secs % 60 {
            0 => format!("{mins}m"),
            s => format!("{mins}m{s}s"),
        }
    } else if mins < 180 {
        format!("{mins}m")
    } else if hours < 8 {
        match mins % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        let years = days / 365;
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{}y", days / 365)
    }
}

/// Selector `matchLabels` rendered as `a=b,c=d` (the Selector column).
pub fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(expr, "/key");
        let values: Vec<&str> = arr(expr, "/values").iter().filter_map(Value::as_str).collect();
        parts.push(match s(expr, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// A map of labels rendered as `a=b,c=d`.
pub fn labels_string(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The column definitions of a table.
pub fn column_definitions(columns: &[Column]) -> Value {
    columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": "", "priority": c.priority}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(303), "5m3s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400 + 7200), "3d2h");
        assert_eq!(human_duration(695 * 86400), "695d");
        assert_eq!(human_duration(800 * 86400), "2y70d");
    }

    #[test]
    fn selectors_render_like_kubectl() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b)");
    }
}
