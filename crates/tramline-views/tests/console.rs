//! The console's live rows against a change feed published by hand: the rows of the keys a
//! batch changed, each once; a flood of changes turned into `resync`s at most one per
//! `RESYNC_PAUSE`; and a stream that ends when the listener's stop is cancelled.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tramline_core::changes::ChangeFeed;
use tramline_testkit::sse::{ServerEvent, ServerEvents};
use tramline_views::console::{self, ConsoleConfig, LiveRows, RESYNC_PAUSE};

/// A console whose rows are `{"id": key}`, on a port of its own; its address.
async fn serve(feed: &ChangeFeed, stop: &CancellationToken) -> String {
    let config = ConsoleConfig {
        title: "test".into(),
        collection: "/rows".into(),
        key: "id".into(),
        columns: Vec::new(),
        filters: Vec::new(),
        groups: Vec::new(),
        group: "test".into(),
        parked: false,
        auth: false,
    };
    let live = LiveRows::new(
        feed.clone(),
        |key| async move { Ok(Some(json!({ "id": key }))) },
    );
    let routes = console::router(config, Some(live), stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("bound");
    let stopped = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(stopped.cancelled_owned())
            .await
    });
    format!("http://{address}")
}

async fn subscribe(base: &str, feed: &ChangeFeed) -> ServerEvents {
    let response = reqwest::get(format!("{base}/console/live"))
        .await
        .expect("the live stream");
    assert_eq!(response.status(), 200);
    // The handler subscribes when the request arrives: wait for it, then publish.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !feed.listening() {
        assert!(Instant::now() < deadline, "the stream never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ServerEvents::new(response)
}

async fn next(live: &mut ServerEvents) -> ServerEvent {
    tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
}

fn keys(n: usize, batch: usize) -> Vec<String> {
    (0..n).map(|i| format!("k-{batch}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rows_are_sent_once_and_a_flood_becomes_paced_resyncs() {
    let feed = ChangeFeed::default();
    let stop = CancellationToken::new();
    let base = serve(&feed, &stop).await;
    let mut live = subscribe(&base, &feed).await;

    // One batch: its rows, a key changed twice sent once.
    feed.publish(vec!["a".into(), "b".into(), "a".into()]);
    let event = next(&mut live).await;
    assert_eq!(event.name, "rows");
    let rows: Value = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(rows, json!([{ "id": "a" }, { "id": "b" }]));

    // More than one event carries, for 2.5 s without a pause: resyncs, one per pause at most
    // (the first at once, then one a second: without the pause, one per batch, hundreds).
    let flood = {
        let feed = feed.clone();
        tokio::spawn(async move {
            let until = Instant::now() + RESYNC_PAUSE * 5 / 2;
            let mut batch = 0;
            while Instant::now() < until {
                feed.publish(keys(console::MAX_LIVE_ROWS + 1, batch));
                batch += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let started = Instant::now();
    let mut resyncs = Vec::new();
    while !flood.is_finished() {
        let event = next(&mut live).await;
        if event.name == "resync" {
            resyncs.push(started.elapsed());
        }
    }
    assert!(
        (2..=4).contains(&resyncs.len()),
        "resyncs at {resyncs:?} during a 2.5 s flood"
    );

    // After the flood, changes are rows again.
    tokio::time::sleep(RESYNC_PAUSE).await;
    feed.publish(vec!["after".into()]);
    let rows = loop {
        let event = next(&mut live).await;
        if event.name == "rows" {
            break event.data;
        }
    };
    let ids: BTreeSet<String> = serde_json::from_str::<Vec<Value>>(&rows)
        .expect("JSON")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains("after"), "{ids:?}");

    // Cancelling the stop ends the stream (the listener stops without waiting for it).
    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while live.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the stop");
}
