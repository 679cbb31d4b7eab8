//! The committed contract artifacts are exactly what the pinned compiler makes of the sources.

use std::{path::Path, process::Command};

#[test]
fn artifacts_match_a_fresh_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tools/compile.mjs"))
        .arg("--check")
        .current_dir(root)
        .output()
        .expect("node must be installed to recompile the fixture contracts");
    assert!(
        out.status.success(),
        "recompiling fixtures/contracts does not reproduce fixtures/artifacts (run `npm install --prefix tools && node tools/compile.mjs`):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn artifacts_record_compiler_and_settings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fixtures/artifacts/build-info.json")).unwrap(),
    )
    .unwrap();
    assert!(info["compiler"]["version"].as_str().unwrap().starts_with("0.8.28+"));
    assert_eq!(info["settings"]["optimizer"]["enabled"], true);
    let pmm: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fixtures/artifacts/PmmPool.json")).unwrap(),
    )
    .unwrap();
    for key in ["abi", "bytecode", "deployedBytecode", "compiler", "settings"] {
        assert!(pmm.get(key).is_some(), "PmmPool artifact lacks {key}");
    }
}
