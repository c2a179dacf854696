//! The container shim as a program of its own: `kate-runtime-shim shim start|run DIR`, the same
//! arguments as `kate shim …`, for the runtime's tests (and for running the runtime without the
//! kate binary).

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let args = match args.split_first() {
        Some((first, rest)) if first == "shim" => rest,
        _ => &args[..],
    };
    std::process::exit(kate_runtime::shim_main(args));
}
