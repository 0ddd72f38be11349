//! The Redis bus delivers every event to a process that hears everything (the API) and only
//! control events to one that hears control (workers, the scheduler).

use std::time::Duration;

use codex32_shared::bus::redis::RedisBus;
use codex32_shared::bus::{Bus, Event, Hearing};
use codex32_shared::domain::ExecStatus;
use codex32_shared::testing::TestRedis;
use tokio::sync::broadcast::Receiver;
use uuid::Uuid;

async fn next(events: &mut Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the bus is open")
}

/// The next event that is not a (late) `probe`.
async fn past(probe: &Event, events: &mut Receiver<Event>) -> Event {
    loop {
        let e = next(events).await;
        if e != *probe {
            return e;
        }
    }
}

fn update(status: ExecStatus) -> Event {
    Event::ExecutionUpdated {
        id: Uuid::now_v7(),
        bot_id: Uuid::now_v7(),
        owner_id: Uuid::now_v7(),
        status,
        attempt: 1,
        worker_id: Some("w".into()),
        exit_code: None,
        error: None,
    }
}

/// The event that [`subscribed`] publishes until every receiver hears it.
fn probe() -> Event {
    Event::DrainRequested {
        worker_id: "probe".into(),
    }
}

/// Subscriptions are made in the background: publishes a control event until every receiver
/// hears it.
async fn subscribed(publisher: &RedisBus, receivers: &mut [&mut Receiver<Event>]) {
    loop {
        publisher.publish(&probe()).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_millis(200), async {
            for events in receivers.iter_mut() {
                next(events).await;
            }
        });
        if heard.await.is_ok() {
            return;
        }
    }
}

/// A bus that hears everything and one that hears control events, with a receiver of each,
/// both subscribed.
async fn hearers(url: &str) -> (RedisBus, RedisBus, Receiver<Event>, Receiver<Event>) {
    let everything = RedisBus::connect(url, "t", Hearing::Everything)
        .await
        .unwrap();
    let control = RedisBus::connect(url, "t", Hearing::Control).await.unwrap();
    let (mut all, mut ctl) = (everything.subscribe(), control.subscribe());
    subscribed(&control, &mut [&mut ctl, &mut all]).await;
    (everything, control, all, ctl)
}

#[tokio::test]
async fn a_control_hearer_gets_control_events_only_and_an_everything_hearer_gets_all() {
    let redis = TestRedis::start();
    let (everything, control, mut all, mut ctl) = hearers(&redis.url).await;
    let update = update(ExecStatus::Running);
    let cancel = Event::CancelRequested {
        execution_id: Uuid::now_v7(),
    };
    // A state change, then a control event, published from either side.
    control.publish(&update).await.unwrap();
    everything.publish(&cancel).await.unwrap();
    let probe = probe();
    assert_eq!(past(&probe, &mut all).await, update);
    assert_eq!(next(&mut all).await, cancel);
    assert_eq!(
        past(&probe, &mut ctl).await,
        cancel,
        "the state change is not delivered to a control hearer"
    );
}

/// Events published together (one pipeline) arrive in the order given, each on its channel.
#[tokio::test]
async fn events_published_together_arrive_in_order() {
    let redis = TestRedis::start();
    let (_everything, control, mut all, mut ctl) = hearers(&redis.url).await;
    let cancel = Event::CancelRequested {
        execution_id: Uuid::now_v7(),
    };
    let mut batch: Vec<Event> = (0..50).map(|_| update(ExecStatus::Queued)).collect();
    batch.insert(25, cancel.clone());
    control.publish_many(&batch).await.unwrap();
    let probe = probe();
    let mut heard = vec![past(&probe, &mut all).await];
    while heard.len() < batch.len() {
        heard.push(next(&mut all).await);
    }
    assert_eq!(heard, batch);
    assert_eq!(past(&probe, &mut ctl).await, cancel);
    control.publish_many(&[]).await.unwrap();
}
