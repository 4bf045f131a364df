//! `demo`: the whole program in one process on a throwaway PostgreSQL (or `DATABASE_URL`):
//! the simulator, a worker, and about 20 orders across the four payment methods, including
//! refusals, a slow ticketing and a payment whose answer is lost, until every order is done.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::localpg::Scratch;
use atrip_simulator::{self as simulator, SimConfig};
use ticketing_tracker::atrip::Client;
use ticketing_tracker::config::Settings;
use ticketing_tracker::jobs::JobStore;
use ticketing_tracker::worker::{Clock, Worker};

/// One demo order: what it shows, and how it is set up.
struct Case {
    what: &'static str,
    method: i16,
    card: Option<Value>,
    order: Value,
    scenario: Option<Value>,
}

fn visa() -> Value {
    json!({"cardNumber": "4532015112830366", "cardCVV": "123", "cardExpireMonth": "07",
           "cardExpireYear": "2030", "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
           "reusable": false, "paymentLimit": 150})
}

fn mor_visa() -> Value {
    json!({"cardNumber": "4054695723100768", "cardCVV": "123", "cardExpireMonth": "12",
           "cardExpireYear": "2031", "cardHolderFirstName": "JANE", "cardHolderLastName": "DOE",
           "threeDS": {"ip": "203.0.113.7"}})
}

fn cases(n: usize) -> Vec<Case> {
    let plain = |what, method, card: Option<Value>, order: Value| Case {
        what,
        method,
        card,
        order,
        scenario: None,
    };
    let mut special = vec![
        plain(
            "card mismatch (MoR, order booked for MasterCard, Visa given): refused 414",
            5,
            Some(mor_visa()),
            json!({"payment": {"cardType": "MasterCard"}}),
        ),
        plain(
            "past the payment deadline: refused 401",
            1,
            None,
            json!({"paymentDeadlineSeconds": -60}),
        ),
        Case {
            what: "slow ticketing (8 s)",
            method: 1,
            card: None,
            order: json!({}),
            scenario: Some(json!({"ticketing_delay_ms": 8000})),
        },
        Case {
            what: "pay answer lost after the charge: recovered by order query, charged once",
            method: 3,
            card: Some(visa()),
            order: json!({}),
            scenario: Some(json!({"drop_after_charge": 1})),
        },
        Case {
            what: "ticketing fails at the airline (errorCode 605)",
            method: 1,
            card: None,
            order: json!({}),
            scenario: Some(json!({"fail_ticketing": "605"})),
        },
    ];
    let mut out = Vec::new();
    let regular = n.saturating_sub(special.len());
    for i in 0..regular {
        out.push(match i % 4 {
            0 => plain("deposit", 1, None, json!({})),
            1 => plain("VCC card", 3, Some(visa()), json!({})),
            2 => plain("BYOA", 4, None, json!({})),
            _ => plain(
                "MoR card",
                5,
                Some(mor_visa()),
                json!({"payment": {"cardType": "Visa"}}),
            ),
        });
    }
    out.append(&mut special);
    out
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut log = Settings::defaults().log;
    log.level = "warn".into();
    ticketing_tracker::telemetry::init(&log);
    let kept = std::env::var("DATABASE_URL").is_ok();
    if kept {
        println!(
            "DATABASE_URL is set: the demo creates a database of its own, ticketing_demo_{}, on that server (the database the URL names is not touched), and keeps it afterwards for you to inspect.",
            std::process::id()
        );
    } else {
        println!("Starting a throwaway PostgreSQL (set DATABASE_URL to use a server of yours)...");
    }
    let db = Scratch::create("ticketing_demo").await?;
    let sim = simulator::start(
        SimConfig {
            ticketing_delay: Duration::from_secs(2),
            one_passenger_at_a_time: true,
            ..SimConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let mut settings = Settings::defaults();
    settings.atrip.base_url = sim.base_url();
    settings.atrip.pay_timeout_ms = 3000;
    settings.atrip.query_timeout_ms = 3000;
    settings.worker.lease_ms = 10_000;
    settings.worker.recovery_delay_ms = 500;
    settings.worker.first_poll_ms = 500;
    settings.worker.poll_initial_ms = 500;
    settings.worker.poll_max_ms = 2000;
    settings.worker.claim_interval_ms = 200;
    settings.validate()?;
    let atrip = Client::new(&settings.atrip)?;
    let store = JobStore::new(db.pool.clone());
    println!(
        "ATRIP simulator on {}; database {}",
        sim.base_url(),
        crate::localpg::redact_url(&db.url)
    );

    let mut orders = Vec::new();
    for case in cases(args.orders.max(5)) {
        let passengers = json!([{"name": "DOE/JANE", "passengerType": 0}, {"name": "DOE/JOHN", "passengerType": 0}]);
        let mut body = json!({"passengers": passengers});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), case.order.clone()) {
            b.extend(extra);
        }
        let order_no = atrip.create_order(&body).await?.order_no;
        if let Some(s) = &case.scenario {
            reqwest::Client::new()
                .post(format!("{}/sim/orders/{order_no}/scenario", sim.base_url()))
                .json(s)
                .send()
                .await?
                .error_for_status()?;
        }
        store
            .enqueue(&order_no, case.method, case.card.as_ref(), None)
            .await?;
        orders.push((order_no, case.what));
    }
    println!(
        "Enqueued {} orders with plain INSERTs; the worker takes it from here.\n",
        orders.len()
    );

    let worker = Worker::new(
        store.clone(),
        atrip,
        settings.worker.clone(),
        settings.atrip.rate_limit_per_s,
        "demo-worker".into(),
        Clock::default(),
    );
    let stop = CancellationToken::new();
    let running = {
        let (w, s) = (worker.clone(), stop.clone());
        tokio::spawn(async move { w.run(s).await })
    };
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut last_counts = String::new();
    loop {
        let rows = store.list(None, 1000).await?;
        let counts = store.count_by_state().await?;
        let counts_line = counts
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        if tty {
            print!(
                "\x1b[2J\x1b[H{}",
                ticketing_tracker::commands::list::render_table(&rows)
            );
            println!(
                "\n{:>5.1} s  {counts_line}",
                started.elapsed().as_secs_f64()
            );
            std::io::stdout().flush()?;
        } else if counts_line != last_counts {
            println!("{:>5.1} s  {counts_line}", started.elapsed().as_secs_f64());
        }
        last_counts = counts_line;
        if store.unfinished().await? == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the demo did not finish within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    running.await??;

    let rows = store.list(None, 1000).await?;
    println!(
        "\nFinal table:\n{}",
        ticketing_tracker::commands::list::render_table(&rows)
    );
    let ledger = sim.ledger();
    println!(
        "{:<24} {:<12} {:>7} {:>8}  CASE",
        "ORDER", "STATE", "PAY.DO", "CHARGES"
    );
    let mut refunds = Vec::new();
    let mut double = 0;
    for (order_no, what) in &orders {
        let row = rows.iter().find(|r| &r.order_no == order_no);
        let entry = &ledger["orders"][order_no];
        let charges = entry["charges"].as_i64().unwrap_or(0);
        double += usize::from(charges > 1);
        let state = row.map_or("?", |r| r.state.as_str());
        println!(
            "{:<24} {:<12} {:>7} {:>8}  {what}",
            order_no,
            state,
            entry["pay_requests"].as_i64().unwrap_or(0),
            charges
        );
        if state == "failed" && charges > 0 {
            refunds.push(order_no.as_str());
        }
    }
    for order_no in refunds {
        println!(
            "\n{order_no} was charged once, then ATRIP cancelled its ticketing: the money comes back through ATRIP's refund process (for a VCC order, to the card). Its row says why (`cargo run -- status {order_no}`); nothing more is charged."
        );
    }
    let count = |s: &str| rows.iter().filter(|r| r.state == s).count();
    println!(
        "\nSummary: {} ticketed, {} failed, {} needs review; {} orders charged more than once; {:.1} s.",
        count("ticketed"),
        count("failed"),
        count("needs_review"),
        double,
        started.elapsed().as_secs_f64()
    );
    if kept {
        println!(
            "\nThe database {} is kept (drop it with: DROP DATABASE {0}). Inspect it with:\n  DATABASE_URL='{}' cargo run -- list\n  DATABASE_URL='{}' cargo run -- status {}\n  psql '{}' -c 'SELECT order_no, state, pnr, last_error FROM ticketing_jobs'",
            db.name,
            crate::localpg::redact_url(&db.url),
            crate::localpg::redact_url(&db.url),
            orders[orders.len() - 2].0,
            crate::localpg::redact_url(&db.url)
        );
    } else {
        println!(
            "\nThe throwaway PostgreSQL goes away with this process. To keep and inspect the data, run the demo with DATABASE_URL set (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres), then use `cargo run -- list` and `cargo run -- status ORDER_NO` (or the ticketing-tracker binary)."
        );
    }
    anyhow::ensure!(double == 0, "an order was charged more than once");
    Ok(())
}
