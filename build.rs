//! Records the source revision for `cortex_gateway_build_info{revision}`.
//! An explicit `CORTEX_GATEWAY_REVISION` (set by image builds without `.git`)
//! wins; otherwise git is asked; "unknown" when neither answers.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CORTEX_GATEWAY_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("CORTEX_GATEWAY_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let output = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CORTEX_GATEWAY_REVISION={revision}");
}
