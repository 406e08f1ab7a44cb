fn main() {
    // tauri-build looks for capabilities in ./capabilities next to tauri.conf.json (the package
    // root); this package keeps them with the rest of the shell in src-tauri/.
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    tauri_build::try_build(tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/**/*"))
        .expect("tauri-build failed");
}
