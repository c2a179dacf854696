//! Query parameters of resource requests, parsed leniently as upstream does (unknown ones ignored).

use serde::Deserialize;

use crate::error::ApiError;
use crate::registry::{FieldValidation, ListOptions, WriteOptions};
use crate::selector::{FieldSelector, LabelSelector};

/// The query parameters kubectl and client-go send.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Query {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `limit`.
    pub limit: Option<String>,
    /// `continue`.
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `watch`.
    pub watch: Option<String>,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<String>,
    /// `allowWatchBookmarks`.
    pub allow_watch_bookmarks: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<String>,
    /// `dryRun`.
    pub dry_run: Option<String>,
    /// `fieldValidation`.
    pub field_validation: Option<String>,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `force` (server-side apply).
    pub force: Option<String>,
    /// `includeObject` (Tables).
    pub include_object: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<String>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
    /// `orphanDependents` (deprecated form of the propagation policy).
    pub orphan_dependents: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | "True"))
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
    }

    /// Whether this is a watch.
    pub fn is_watch(&self) -> bool {
        flag(&self.watch)
    }

    /// Whether bookmarks were asked for.
    pub fn bookmarks(&self) -> bool {
        flag(&self.allow_watch_bookmarks)
    }

    /// Whether the caller asked for the initial state as events (a watch-list).
    pub fn initial_events(&self) -> Option<bool> {
        self.send_initial_events
            .as_ref()
            .map(|_| flag(&self.send_initial_events))
    }

    /// `timeoutSeconds`, if valid.
    pub fn timeout(&self) -> Option<u64> {
        self.timeout_seconds.as_deref().and_then(|t| t.parse().ok())
    }

    /// List options, with selectors checked against the kind's field labels.
    pub fn list_options(&self, field_labels: &[&str]) -> Result<ListOptions, ApiError> {
        let limit = match self.limit.as_deref() {
            None | Some("") => 0,
            Some(l) => l
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("limit: invalid value {l:?}")))?
                .max(0) as usize,
        };
        Ok(ListOptions {
            labels: LabelSelector::parse(self.label_selector.as_deref().unwrap_or(""))?,
            fields: FieldSelector::parse(self.field_selector.as_deref().unwrap_or(""), field_labels)?,
            limit,
            continue_token: self.continue_token.clone().filter(|c| !c.is_empty()),
            resource_version: self.resource_version.clone(),
            resource_version_match: self.resource_version_match.clone(),
        })
    }

    /// Options of a write; without a `fieldManager`, the manager is named after the client's
    /// user agent (`kubectl/v1.33.1 …` → `kubectl`), as upstream does.
    pub fn write_options(&self, user_agent: Option<&str>) -> Result<WriteOptions, ApiError> {
        let field_validation = match self.field_validation.as_deref() {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: invalid value {other:?}: must be one of Ignore, Warn or Strict"
                )));
            }
        };
        let from_agent = user_agent
            .and_then(|ua| ua.split('/').next())
            .filter(|m| !m.is_empty())
            .map(String::from);
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_validation,
            field_manager: self.field_manager.clone().filter(|m| !m.is_empty()).or(from_agent),
            force: matches!(self.force.as_deref(), Some("true" | "1")),
            ..WriteOptions::default()
        })
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun: unsupported value {other:?}: supported values: \"All\""
            ))),
        }
    }
}
