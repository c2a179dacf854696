//! ImageLocality: prefers nodes that already have the pod's images, weighted by image size and
//! by how widely the image is spread (an image on every node says little).

use crate::framework::{Cycle, CycleState, MAX_NODE_SCORE, Plugin};
use crate::node::NodeInfo;

const MB: i64 = 1024 * 1024;
/// Below this total, image locality does not count.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this total it counts fully.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality plugin.
pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn score(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> i64 {
        let pod = cycle.pod;
        if pod.images.is_empty() || node.images.is_empty() {
            return 0;
        }
        let total_nodes = cycle.cache.nodes().len().max(1) as f64;
        let sum: i64 = pod
            .images
            .iter()
            .filter_map(|image| {
                let size = *node.images.get(image)?;
                let spread = cycle.cache.nodes_with_image(image) as f64 / total_nodes;
                Some((size as f64 * spread) as i64)
            })
            .sum();
        let max = MAX_CONTAINER_THRESHOLD * pod.images.len() as i64;
        let clamped = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::framework::Cycle;
    use crate::plugins::tests::pod;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    #[test]
    fn big_local_images_score() {
        let mut cache = Cache::default();
        for (name, images) in [
            ("a", json!([{"names": ["nginx:1.25"], "sizeBytes": 500 * MB}])),
            ("b", json!([])),
        ] {
            let n: Node = serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"images": images, "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}))
            .unwrap();
            cache.upsert_node(&n);
        }
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}));
        let cycle = Cycle { pod: &p, cache: &cache };
        let state = CycleState::default();
        // 500MB on one of two nodes counts as 250MB: (250 - 23) * 100 / (1000 - 23).
        assert_eq!(ImageLocality.score(&cycle, &state, cache.node("a").unwrap()), 23);
        assert_eq!(ImageLocality.score(&cycle, &state, cache.node("b").unwrap()), 0);
    }
}
