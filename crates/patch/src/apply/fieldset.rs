//! Field sets: the fields a manager owns, as sorted paths, plus the `FieldsV1` JSON that
//! `metadata.managedFields` stores them in and the path syntax conflict messages use.
//!
//! Paths and their order follow sigs.k8s.io/structured-merge-diff, so that an encoded set is
//! byte-for-byte what an upstream apiserver would store for the same fields.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Clone, Debug)]
pub(crate) enum Element {
    /// A field of an object: `f:<name>`.
    Field(String),
    /// The item of a keyed list whose key fields have these values, sorted by name: `k:{...}`.
    Key(Vec<(String, Value)>),
    /// The item of a set with this value: `v:<json>`.
    Value(Value),
    /// The item at a position of a list: `i:<n>`. Kate never tracks by position, but upstream
    /// may have stored such entries, and they must survive a round trip.
    Index(usize),
}

impl Element {
    /// A key element; upstream sorts key fields by name, whatever order the schema lists them in.
    pub(crate) fn key(mut fields: Vec<(String, Value)>) -> Self {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Element::Key(fields)
    }

    fn rank(&self) -> u8 {
        match self {
            Element::Field(_) => 0,
            Element::Key(_) => 1,
            Element::Value(_) => 2,
            Element::Index(_) => 3,
        }
    }

    /// The `FieldsV1` object key for this element.
    fn encode(&self) -> String {
        match self {
            Element::Field(name) => ["f:", name].concat(),
            Element::Key(fields) => {
                let object: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(object))
            }
            Element::Value(value) => format!("v:{value}"),
            Element::Index(index) => format!("i:{index}"),
        }
    }

    fn decode(key: &str) -> Result<Self, String> {
        let bad = || format!("invalid field path element {key:?}");
        let (kind, rest) = key.split_once(':').ok_or_else(bad)?;
        match kind {
            "f" => Ok(Element::Field(rest.to_owned())),
            "k" => match serde_json::from_str(rest) {
                Ok(Value::Object(fields)) => Ok(Element::key(fields.into_iter().collect())),
                _ => Err(bad()),
            },
            "v" => serde_json::from_str(rest).map(Element::Value).map_err(|_| bad()),
            "i" => rest.parse().map(Element::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// Upstream's human-readable form, used in conflict messages: `.name`, `[key="v"]`, `[="v"]`, `[0]`.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Field(name) => write!(f, ".{name}"),
            Element::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    let separator = if i == 0 { "" } else { "," };
                    write!(f, "{separator}{name}={value}")?;
                }
                f.write_str("]")
            }
            Element::Value(value) => write!(f, "[={value}]"),
            Element::Index(index) => write!(f, "[{index}]"),
        }
    }
}

impl Ord for Element {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Element::Field(a), Element::Field(b)) => a.cmp(b),
            (Element::Key(a), Element::Key(b)) => {
                let pairs = a.iter().zip(b);
                pairs
                    .map(|((an, av), (bn, bv))| an.cmp(bn).then_with(|| compare_values(av, bv)))
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| a.len().cmp(&b.len()))
            }
            (Element::Value(a), Element::Value(b)) => compare_values(a, b),
            (Element::Index(a), Element::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Element {}

/// Upstream's total order on values: numbers, strings, booleans, lists, objects, then null.
/// Numbers compare by value, so `1` and `1.0` are the same key, as they are after Go decoding.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => Ordering::Equal,
            },
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(x, y)| compare_values(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            let mut x: Vec<_> = x.iter().collect();
            let mut y: Vec<_> = y.iter().collect();
            x.sort_by(|a, b| a.0.cmp(b.0));
            y.sort_by(|a, b| a.0.cmp(b.0));
            x.iter()
                .zip(&y)
                .map(|((xk, xv), (yk, yv))| xk.cmp(yk).then_with(|| compare_values(xv, yv)))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Renders a path the way upstream prints it, e.g. `.spec.containers[name="nginx"].image`.
pub(crate) fn render(path: &[Element]) -> String {
    path.iter().map(Element::to_string).collect()
}

/// A set of owned paths. A path is a member when its manager owns that node itself (a leaf, a
/// list item, an entry of a free-form map); parents of members are implied, not owned.
///
/// Held as a tree of elements, one node per distinct prefix, so that paths sharing a prefix
/// share its elements, and the `FieldsV1` JSON is the same tree written out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet(Node);

/// The paths that extend one prefix. Every node below the root is a member or has members
/// below it: emptied nodes are removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: BTreeMap<Element, Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn find(&self, path: &[Element]) -> Option<&Node> {
        path.iter().try_fold(self, |node, element| node.children.get(element))
    }

    /// Keeps the members `keep` accepts; `path` is this node's path, used as scratch.
    fn retain(&mut self, path: &mut Vec<Element>, keep: &mut impl FnMut(&[Element]) -> bool) {
        if self.member && !keep(path) {
            self.member = false;
        }
        self.children.retain(|element, child| {
            path.push(element.clone());
            child.retain(path, keep);
            path.pop();
            !child.is_empty()
        });
    }

    fn absorb(&mut self, other: Node) {
        self.member |= other.member;
        for (element, child) in other.children {
            match self.children.entry(element) {
                Entry::Vacant(slot) => {
                    slot.insert(child);
                }
                Entry::Occupied(mut slot) => slot.get_mut().absorb(child),
            }
        }
    }

    /// Removes the members of `other`.
    fn remove_all(&mut self, other: &Node) {
        if other.member {
            self.member = false;
        }
        for (element, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(element) {
                mine.remove_all(theirs);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    fn paths<'a>(&'a self, path: &mut Vec<&'a Element>, out: &mut Vec<Vec<Element>>) {
        if self.member {
            out.push(path.iter().map(|&e| e.clone()).collect());
        }
        for (element, child) in &self.children {
            path.push(element);
            child.paths(path, out);
            path.pop();
        }
    }

    fn to_fields_v1(&self) -> Value {
        let mut object = Map::with_capacity(self.children.len() + usize::from(self.member));
        if self.member && !self.children.is_empty() {
            object.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            object.insert(element.encode(), child.to_fields_v1());
        }
        Value::Object(object)
    }

    fn from_fields_v1(value: &Value, path: &mut Vec<Element>) -> Result<Node, String> {
        let Value::Object(object) = value else {
            return Err(format!("fieldsV1 at {:?} is not an object", render(path)));
        };
        let mut node = Node {
            member: object.is_empty() && !path.is_empty(),
            children: BTreeMap::new(),
        };
        for (key, child) in object {
            if key == "." {
                node.member |= !path.is_empty();
                continue;
            }
            let element = Element::decode(key)?;
            path.push(element.clone());
            let child = Node::from_fields_v1(child, path)?;
            path.pop();
            if !child.is_empty() {
                node.children.entry(element).or_default().absorb(child);
            }
        }
        Ok(node)
    }
}

impl FieldSet {
    /// A subtree that is owned itself; with `false`, an empty one. Walks build a set bottom up
    /// from these and [`FieldSet::graft`], which is cheaper than inserting every path from the
    /// root.
    pub(crate) fn subtree(member: bool) -> FieldSet {
        FieldSet(Node {
            member,
            children: BTreeMap::new(),
        })
    }

    /// Marks the subtree's root as owned.
    pub(crate) fn own(&mut self) {
        self.0.member = true;
    }

    /// Hangs the paths of `child` under `element`; nothing when it is empty.
    pub(crate) fn graft(&mut self, element: Element, child: FieldSet) {
        if child.0.is_empty() {
            return;
        }
        match self.0.children.entry(element) {
            Entry::Vacant(slot) => {
                slot.insert(child.0);
            }
            Entry::Occupied(mut slot) => slot.get_mut().absorb(child.0),
        }
    }

    #[cfg(test)]
    pub(crate) fn insert(&mut self, path: &[Element]) {
        if path.is_empty() {
            return;
        }
        let node = path.iter().fold(&mut self.0, |node, element| {
            if !node.children.contains_key(element) {
                node.children.insert(element.clone(), Node::default());
            }
            node.children.get_mut(element).expect("just inserted")
        });
        node.member = true;
    }

    pub(crate) fn contains(&self, path: &[Element]) -> bool {
        !path.is_empty() && self.0.find(path).is_some_and(|node| node.member)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.children.is_empty()
    }

    /// The members, in path order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Vec<Element>> {
        let mut out = Vec::new();
        self.0.paths(&mut Vec::new(), &mut out);
        out.into_iter()
    }

    /// Whether `path` or anything below it is a member.
    pub(crate) fn covers(&self, path: &[Element]) -> bool {
        // Only nodes that lead to members are kept.
        self.0.find(path).is_some_and(|node| !node.is_empty())
    }

    /// Keeps the children of the node at `path` that `keep` accepts, with all below them;
    /// the node itself stops being a member, and goes if nothing is left below it.
    pub(crate) fn retain_children(&mut self, path: &[Element], mut keep: impl FnMut(&Element) -> bool) {
        let Some((last, parents)) = path.split_last() else {
            self.0.member = false;
            self.0.children.retain(|element, _| keep(element));
            return;
        };
        let Some(parent) = parents
            .iter()
            .try_fold(&mut self.0, |node, element| node.children.get_mut(element))
        else {
            return;
        };
        let Some(node) = parent.children.get_mut(last) else {
            return;
        };
        node.member = false;
        node.children.retain(|element, _| keep(element));
        if node.is_empty() {
            parent.children.remove(last);
        }
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&[Element]) -> bool) {
        self.0.retain(&mut Vec::new(), &mut keep);
    }

    pub(crate) fn extend(&mut self, other: &FieldSet) {
        self.0.absorb(other.0.clone());
    }

    /// Adds the members of `other`, taking them rather than copying.
    pub(crate) fn absorb(&mut self, other: FieldSet) {
        self.0.absorb(other.0);
    }

    /// Members of `self` that are not members of `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.0.remove_all(&other.0);
        out
    }

    /// The `fieldsV1` JSON: nested `f:`/`k:`/`v:`/`i:` keys, `{}` for a member without
    /// children and `".": {}` for a member that also has children.
    pub(crate) fn to_fields_v1(&self) -> Value {
        self.0.to_fields_v1()
    }

    /// Parses `fieldsV1` JSON as stored in `metadata.managedFields`.
    pub(crate) fn from_fields_v1(value: &Value) -> Result<Self, String> {
        Node::from_fields_v1(value, &mut Vec::new()).map(FieldSet)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str) -> Element {
        Element::Field(name.to_owned())
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let stored = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}
                },
                "f:finalizers": {"v:\"a\"": {}},
                "f:replicas": {}
            }
        });
        let set = FieldSet::from_fields_v1(&stored).unwrap();
        assert!(set.contains(&[field("spec"), field("replicas")]));
        let nginx = Element::key(vec![("name".to_owned(), json!("nginx"))]);
        assert!(set.contains(&[field("spec"), field("containers"), nginx.clone()]));
        assert!(!set.contains(&[field("spec")]));
        assert!(set.covers(&[field("spec"), field("containers")]));
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            serde_json::to_string(&stored).unwrap()
        );
        assert_eq!(
            render(&[field("spec"), field("containers"), nginx, field("image")]),
            ".spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn keys_sort_by_field_name_and_values_numerically() {
        let port = |n: i64| {
            Element::key(vec![
                ("protocol".to_owned(), json!("TCP")),
                ("containerPort".to_owned(), json!(n)),
            ])
        };
        assert_eq!(port(80).encode(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert!(port(9) < port(10));
        assert!(field("z") < port(1));
        assert_eq!(port(80).to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(compare_values(&json!(1), &json!(1.0)), Ordering::Equal);
        assert!(Element::decode("x:1").is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn removing_members_prunes_what_no_longer_leads_to_one() {
        let path = |names: &[&str]| names.iter().map(|n| field(n)).collect::<Vec<_>>();
        let mut set = FieldSet::default();
        for p in [
            &["spec", "replicas"][..],
            &["spec", "template", "image"],
            &["spec", "template"],
            &["data"],
        ] {
            set.insert(&path(p));
        }
        let listed: Vec<String> = set.iter().map(|p| render(&p)).collect();
        assert_eq!(
            listed,
            [".data", ".spec.replicas", ".spec.template", ".spec.template.image"]
        );
        let mut other = FieldSet::default();
        other.insert(&path(&["spec", "template", "image"]));
        other.insert(&path(&["spec", "replicas"]));
        let rest = set.difference(&other);
        assert!(rest.covers(&path(&["spec"])) && rest.contains(&path(&["spec", "template"])));
        assert!(!rest.covers(&path(&["spec", "template", "image"])));
        let mut rest = rest;
        rest.retain(|p| p.len() == 1);
        assert!(!rest.covers(&path(&["spec"])), "an emptied branch is removed");
        assert_eq!(rest.to_fields_v1(), json!({"f:data": {}}));
        set.absorb(rest);
        assert_eq!(set.iter().count(), 4);
    }
}
