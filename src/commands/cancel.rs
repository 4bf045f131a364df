//! `cancel`: an order no `pay.do` may have reached ATRIP for (rule P8).

use serde_json::json;

use super::warn_unless_replicated;
use crate::cli::CancelArgs;
use crate::jobs::JobStore;

pub(super) async fn cancel(store: &JobStore, a: CancelArgs, by: &str) -> anyhow::Result<()> {
    store.cancel(&a.order_no, by).await?;
    warn_unless_replicated(store, &a.order_no, "cancel").await;
    if a.json {
        println!("{}", json!({"order_no": a.order_no, "state": "cancelled"}));
    } else {
        println!("order {} cancelled", a.order_no);
    }
    Ok(())
}
