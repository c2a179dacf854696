//! Why an apply was refused, worded like the upstream apiserver's answers.

use thiserror::Error;

use super::managers::Operation;

/// Why server-side apply refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// Fields the configuration would change are owned by other managers (grouped by owner, then in path order); retry with force.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration is malformed (no apiVersion/kind, managedFields set, keyed-list items without keys, ...).
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// HTTP status for the Kubernetes `Status` object: 409 for conflicts, 400 for malformed configurations.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(_) => 400,
        }
    }
}

/// A field the applier would change that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    /// How the owner wrote the field.
    pub operation: Operation,
    /// The API version of the owner's managedFields entry.
    pub api_version: String,
    /// The subresource the owner wrote through, if any.
    pub subresource: Option<String>,
    /// The field in upstream's path syntax, e.g. `.spec.template.spec.containers[name="nginx"].image`.
    pub field: String,
}

impl Conflict {
    /// The `StatusCause` message upstream sends, e.g. `conflict with "kubectl" using apps/v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.owner())
    }

    /// The owner as upstream prints it; only Update owners carry their API version, since an
    /// applier keeps one identity across versions.
    pub(super) fn owner(&self) -> String {
        let mut owner = serde_json::Value::from(self.manager.as_str()).to_string();
        if let Some(subresource) = &self.subresource {
            let quoted = serde_json::Value::from(subresource.as_str());
            owner.push_str(&format!(" with subresource {quoted}"));
        }
        if self.operation == Operation::Update {
            owner.push_str(&format!(" using {}", self.api_version));
        }
        owner
    }
}

/// Upstream's `Status.message`: a single conflict inline, several grouped by owner.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: {}: {}", only.message(), only.field);
    }
    let mut lines = Vec::new();
    let mut previous: Option<String> = None;
    for conflict in conflicts {
        let owner = conflict.owner();
        if previous.as_ref() != Some(&owner) {
            lines.push(format!("conflicts with {owner}:"));
            previous = Some(owner);
        }
        lines.push(format!("- {}", conflict.field));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}
