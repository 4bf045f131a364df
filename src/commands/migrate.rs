//! `migrate`: the embedded migrations applied, then nothing else.

use crate::config::Settings;
use crate::startup::{connect, migrate};

pub(super) async fn command(settings: &Settings) -> anyhow::Result<()> {
    let database = connect(settings).await?;
    migrate(settings, &database).await?;
    println!("migrations applied");
    Ok(())
}
