//! Links the release binary with the functions listed in `text-order.txt` (those `kate server`
//! runs as it starts and serves; `scripts/text-order.sh` regenerates the list) next to each
//! other. A process keeps resident only the parts of the binary it touches, 64 KiB around
//! each touched page; with the functions it runs scattered over the whole text, that is most
//! of it.
//!
//! The list names symbols as this toolchain mangles them. Where a name is missing (other code,
//! another compiler) the function is simply placed as usual; only the linker matters: the
//! option is lld's, which Rust has used by default on x86_64 Linux since 1.90.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=text-order.txt");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let lld_target = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if !release || !lld_target || !rustc_links_with_lld() {
        return;
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = PathBuf::from(dir).join("text-order.txt");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=kate=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=kate=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc is 1.90 or newer, which links x86_64 Linux binaries with its own lld.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
