//! Cheap, borrowed locations inside a patch, rendered only when an error needs them.

use std::fmt;

/// Where the engine currently is, as a chain back to the root of the patch.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path<'a> {
    /// The top-level object.
    Root,
    /// A field of an object.
    Field(&'a Path<'a>, &'a str),
    /// An item of a list, by its index in the patch.
    Item(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("(root)"),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(Path::Root, index) => write!(f, "[{index}]"),
            Path::Item(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn renders_dotted_paths() {
        let spec = Path::Field(&Path::Root, "spec");
        let containers = Path::Field(&spec, "containers");
        let item = Path::Item(&containers, 2);
        let env = Path::Field(&item, "env");
        assert_eq!(env.to_string(), "spec.containers[2].env");
        assert_eq!(Path::Root.to_string(), "(root)");
    }
}
