//! The `restix` binary: everything is in the `restix_cli` library.

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(restix_cli::run(argv));
}
