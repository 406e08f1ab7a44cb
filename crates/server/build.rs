//! Rebuilds the server when the web client's built files change (they are embedded,
//! `src/http/web_client.rs`), including when they first appear.

fn main() {
    println!("cargo:rerun-if-changed=../../ui/dist-web");
}
