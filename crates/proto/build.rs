//! Compiles `proto/natter.proto` with a pure-Rust protobuf compiler, so no
//! system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/natter.proto");
    let fds = protox::compile(["proto/natter.proto"], ["proto"])?;
    prost_build::Config::new()
        // For tools that print frames as JSON (the CLI's --json output).
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
