//! Rebuilds the crate when a migration is added, removed or edited: `embed_migrations!` alone
//! does not notice new migration folders.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}
