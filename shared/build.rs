//! `sqlx::migrate!` embeds the migration files at compile time; a new file must rebuild the
//! crate, or a binary would ship without it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=src/store/sql/sqlite_migrations");
}
