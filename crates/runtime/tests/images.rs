//! The image store end to end with the busybox image built from Debian's busybox-static: import
//! (OCI and docker archives), list, unpack, remove, and pulls from a local `docker-registry`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use kate_runtime::{Credentials, Error, ImageRef, ImageStore, PullOptions, PullPolicy, sha256};
use kate_testkit::{HTPASSWD, Registry, busybox_archive, busybox_version, require, require_root, run};
use serde_json::{Value, json};

const LATEST: &str = "docker.io/library/busybox:latest";
fn image_ref(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn busybox_imports_lists_unpacks_and_is_removed() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let versioned = format!("docker.io/library/busybox:{}", busybox_version());

    let mut names: Vec<_> = store
        .import(busybox_archive())
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    assert_eq!(names, [versioned.clone(), LATEST.to_string()]);

    let images = store.list().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0].id, images[1].id, "both tags name one image");
    let image = store.image(&image_ref("busybox")).unwrap();
    assert_eq!(image.name, LATEST);
    assert_eq!(image.config.cmd, ["sh"]);
    assert!(image.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.repo_digest, None);

    let layers = store.rootfs_layers(&image_ref("busybox")).unwrap();
    assert_eq!(layers.len(), 1);
    let busybox = layers[0].join("bin/busybox");
    let meta = fs::symlink_metadata(&busybox).unwrap();
    assert!(meta.is_file() && meta.permissions().mode() & 0o111 != 0 && meta.uid() == 0);
    assert_eq!(
        fs::read_link(layers[0].join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::metadata(&layers[0]).unwrap().permissions().mode() & 0o777, 0o755);
    let status = Command::new(&busybox).arg("true").status().unwrap();
    assert!(status.success(), "the unpacked busybox runs");

    // Unpacking is done once: the other tag and a second call reuse the directory.
    assert_eq!(store.rootfs_layers(&image_ref(&versioned)).unwrap(), layers);
    assert_eq!(count_files(&store.root().join("layers")), 1);
    assert_eq!(count_files(&store.root().join("tmp")), 0, "no staging left behind");

    // Importing again stores nothing new.
    store.import(busybox_archive()).unwrap();
    let blobs = store.root().join("blobs/sha256");
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(count_files(&blobs), 3, "manifest, config, layer");

    // Content shared with another tag survives the removal of one; the last removal frees it.
    let removed = store.remove(&image_ref("busybox")).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(layers[0].exists());
    assert_eq!(count_files(&blobs), 3);
    store.remove(&image_ref(&versioned)).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count_files(&blobs), 0);
    assert!(!layers[0].exists());
    assert!(matches!(
        store.rootfs_layers(&image_ref("busybox")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn docker_archives_share_layers_with_oci_imports() {
    require_root();
    require("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let docker_tar = dir.path().join("busybox-docker.tar");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci-archive:{}:{LATEST}", busybox_archive().display()),
        &format!("docker-archive:{}:kate.local/busybox:docker", docker_tar.display()),
    ]));

    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let imported = store.import(&docker_tar).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "kate.local/busybox:docker");
    store.import(busybox_archive()).unwrap();

    let from_docker = store.image(&image_ref("kate.local/busybox:docker")).unwrap();
    let from_oci = store.image(&image_ref(LATEST)).unwrap();
    assert_eq!(from_docker.config, from_oci.config);
    assert_eq!(from_docker.layers[0].diff_id, from_oci.layers[0].diff_id);
    // Same content, once on disk, whichever archive it came from.
    assert_eq!(
        store.rootfs_layers(&image_ref("kate.local/busybox:docker")).unwrap(),
        store.rootfs_layers(&image_ref(LATEST)).unwrap()
    );
    assert!(
        store.rootfs_layers(&image_ref(LATEST)).unwrap()[0]
            .join("bin/busybox")
            .is_file()
    );
}

#[test]
fn corrupted_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    unpack_archive(busybox_archive(), &layout);
    // Replace the layer blob's content but keep its name: the digest no longer matches.
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read_blob(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    fs::write(blob_path(&layout, &layer), b"not the layer").unwrap();
    let tar = dir.path().join("corrupt.tar");
    pack_archive(&layout, &tar);

    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let err = store.import(&tar).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn pulls_from_a_local_registry() {
    let registry = Registry::start(None);
    let source = format!("oci-archive:{}:{LATEST}", busybox_archive().display());
    registry.push(&source, "library/busybox:1.35", None, false);

    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let options = PullOptions {
        insecure_registries: vec![registry.host.clone()],
        credentials: None,
    };
    let reference = image_ref(&format!("{}/library/busybox:1.35", registry.host));
    let image = store.pull(&reference, &options).await.unwrap();
    assert_eq!(image.name, reference.to_string());
    assert_eq!(image.config.cmd, ["sh"]);
    assert_eq!(image.repo_digest.as_ref(), Some(&image.manifest_digest));
    // Pulling again finds every blob present.
    assert_eq!(store.pull(&reference, &options).await.unwrap().id, image.id);

    let pinned = image_ref(&format!("{}/library/busybox@{}", registry.host, image.manifest_digest));
    assert_eq!(store.pull(&pinned, &options).await.unwrap().id, image.id);
    assert_eq!(store.image(&pinned).unwrap().id, image.id);

    // The pull policies decide whether the registry is asked at all.
    for policy in [PullPolicy::Never, PullPolicy::IfNotPresent, PullPolicy::Always] {
        assert_eq!(store.ensure(&reference, policy, &options).await.unwrap().id, image.id);
    }
    let other = image_ref(&format!("{}/library/busybox:absent", registry.host));
    let never = store.ensure(&other, PullPolicy::Never, &options).await.unwrap_err();
    assert!(matches!(never, Error::NeverPull(_)), "{never}");

    let missing = store.pull(&other, &options).await.unwrap_err();
    assert!(matches!(missing, Error::Registry { .. }), "{missing}");
    assert!(missing.to_string().contains("busybox:absent"), "{missing}");
    // Without being listed as insecure, the registry is spoken to over HTTPS, which it is not.
    let https = store.pull(&reference, &PullOptions::default()).await.unwrap_err();
    assert!(matches!(https, Error::Registry { .. }), "{https}");
}

#[tokio::test]
async fn pulls_with_basic_auth() {
    let registry = Registry::start(Some(HTPASSWD));
    let source = format!("oci-archive:{}:{LATEST}", busybox_archive().display());
    registry.push(&source, "private/busybox:1", Some("kate:kate-secret"), false);

    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let reference = image_ref(&format!("{}/private/busybox:1", registry.host));
    let options = |password: Option<&str>| PullOptions {
        insecure_registries: vec![registry.host.clone()],
        credentials: password.map(|p| Credentials {
            username: "kate".into(),
            password: p.into(),
        }),
    };
    for refused in [None, Some("wrong")] {
        let err = store.pull(&reference, &options(refused)).await.unwrap_err();
        assert!(matches!(err, Error::Registry { .. }), "{err}");
    }
    let image = store.pull(&reference, &options(Some("kate-secret"))).await.unwrap();
    assert_eq!(image.config.cmd, ["sh"]);
}

#[tokio::test]
async fn multi_platform_indexes_resolve_to_this_platform() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (here, index) = multi_platform_layout(&layout);
    let tar = dir.path().join("multi.tar");
    pack_archive(&layout, &tar);

    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let imported = store.import(&tar).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].manifest_digest.to_string(), here);

    let registry = Registry::start(None);
    registry.push(
        &format!("oci:{}:{LATEST}", layout.display()),
        "library/busybox:multi",
        None,
        true,
    );
    let options = PullOptions {
        insecure_registries: vec![registry.host.clone()],
        credentials: None,
    };
    let reference = image_ref(&format!("{}/library/busybox:multi", registry.host));
    let image = store.pull(&reference, &options).await.unwrap();
    assert_eq!(image.manifest_digest.to_string(), here);
    assert_eq!(image.repo_digest.map(|d| d.to_string()), Some(index));
}

/// Turns the busybox layout into a two-platform index (this machine's platform and another, whose
/// config differs) named `LATEST`; returns this platform's manifest digest and the index digest.
fn multi_platform_layout(layout: &Path) -> (String, String) {
    unpack_archive(busybox_archive(), layout);
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let here = index["manifests"][0].clone();
    let manifest = read_blob(layout, here["digest"].as_str().unwrap());
    let this_arch = kate_runtime::platform().split_once('/').unwrap().1.to_string();
    let other_arch = if this_arch == "arm64" { "amd64" } else { "arm64" };

    let mut config = read_blob(layout, manifest["config"]["digest"].as_str().unwrap());
    config["architecture"] = json!(other_arch);
    let mut other = manifest.clone();
    other["config"] = add_blob(layout, "application/vnd.oci.image.config.v1+json", &config);
    let other = add_blob(layout, "application/vnd.oci.image.manifest.v1+json", &other);

    let platform = |arch: &str| json!({"os": "linux", "architecture": arch});
    let mut entries = [other, here.clone()];
    entries[0]["platform"] = platform(other_arch);
    entries[1]["platform"] = platform(&this_arch);
    entries[1].as_object_mut().unwrap().remove("annotations");
    let media_type = "application/vnd.oci.image.index.v1+json";
    let index_blob = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": entries});
    let mut descriptor = add_blob(layout, media_type, &index_blob);
    descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": LATEST});
    let top = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": [descriptor]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    (
        here["digest"].as_str().unwrap().to_string(),
        descriptor["digest"].as_str().unwrap().to_string(),
    )
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn read_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&fs::read(blob_path(layout, digest)).unwrap()).unwrap()
}

/// Writes a JSON blob into the layout and returns its descriptor.
fn add_blob(layout: &Path, media_type: &str, value: &Value) -> Value {
    let bytes = serde_json::to_vec(value).unwrap();
    let digest = sha256(&bytes).to_string();
    fs::write(blob_path(layout, &digest), &bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

fn unpack_archive(archive: &Path, dest: &Path) {
    tar::Archive::new(fs::File::open(archive).unwrap())
        .unpack(dest)
        .unwrap();
}

fn pack_archive(dir: &Path, archive: &Path) {
    let mut builder = tar::Builder::new(fs::File::create(archive).unwrap());
    builder.append_dir_all(".", dir).unwrap();
    builder.finish().unwrap();
}
