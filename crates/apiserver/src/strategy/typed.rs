//! A strategy wrapper that checks objects against the kind's typed Rust structure, so that a
//! value of the wrong type (`"replicas": "three"`) is refused before anything else looks at it.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Column, NameRule, Strategy};
use crate::error::Cause;

struct Typed<T> {
    inner: Box<dyn Strategy>,
    _kind: PhantomData<fn() -> T>,
}

/// Wraps `inner` so that [`Strategy::decode_check`] deserializes into `T`.
pub fn typed<T: DeserializeOwned + 'static>(inner: Box<dyn Strategy>) -> Box<dyn Strategy> {
    Box::new(Typed::<T> {
        inner,
        _kind: PhantomData,
    })
}

impl<T: DeserializeOwned + 'static> Strategy for Typed<T> {
    fn decode_check(&self, obj: &Value) -> Result<(), String> {
        T::deserialize(obj).map(drop).map_err(|e| e.to_string())?;
        self.inner.decode_check(obj)
    }
    fn name_rule(&self) -> NameRule {
        self.inner.name_rule()
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj)
    }
    fn prepare_create(&self, obj: &mut Value) {
        self.inner.prepare_create(obj)
    }
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        self.inner.validate(obj, old)
    }
    fn reset_status_on_create(&self) -> bool {
        self.inner.reset_status_on_create()
    }
    fn columns(&self) -> Vec<Column> {
        self.inner.columns()
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        self.inner.cells(obj)
    }
    fn field_labels(&self) -> &'static [&'static str] {
        self.inner.field_labels()
    }
}
