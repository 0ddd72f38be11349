//! `codex32-loadtest`: the harness's binary; everything is in the library.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    codex32_loadtest::run(codex32_loadtest::Args::parse()).await?;
    Ok(())
}
